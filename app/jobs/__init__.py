"""Background work: index builds, renders, zoom pyramids and animations, their records, and the
session tile libraries. Imports the engine, storage and settings; never the web layer.

Sending a job and running it are apart: ``kinds`` (the job kinds, their queues, the table of
what runs each) <- ``dispatch`` and ``celery_app`` (send) <- ``runner`` and ``zoom_jobs`` (run,
registering their kinds) <- ``services`` (puts one process together) <- ``worker``
(``tessera worker``). The package imports none of its modules itself, so importing one loads
only what that one needs.
"""
