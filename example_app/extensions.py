"""The extension instance, created once and bound in :func:`create_app`."""
from flask_jobify import Jobify

jobify = Jobify()
