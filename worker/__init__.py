"""The bridge between the web app and training: the Celery tasks (tasks; celery is the workers'
entry point, the app itself webapp/config/celery.py), the run supervisor that starts and relays
the training process (supervisor), and the housekeeping thread (housekeeping)."""
