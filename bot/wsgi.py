"""The WSGI entry for servers such as gunicorn: `gunicorn bot.wsgi:app`.

The configuration comes from the environment, as for every `volbot` command; a wrong
value stops the worker with the one-line ConfigError.
"""

from bot.app import create_app

app = create_app()
