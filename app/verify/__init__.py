"""`backoffice verify`: a deployment proven end to end, one timed step after another.

    app/verify/steps.py  a step's result and failure; what a run made (the scratch records)
    app/verify/run.py    the run: the engines, change notices, sign-in and the session cache,
                         the scratch customer, then the cleanup
    app/verify/bulk.py   import, transform and export of a built-in file, a worker or this
                         process running the import; removing the scratch customer's data

Nothing is imported here: the command imports `app.verify.run` when it runs.
"""
