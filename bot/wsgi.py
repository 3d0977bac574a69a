"""The WSGI entry for servers such as gunicorn: `gunicorn bot.wsgi:app`.

The configuration comes from the environment, as for every `volbot` command; a wrong
value stops the worker with the one-line ConfigError.
"""

import gc

from bot.app import create_app

app = create_app()

# Everything loaded so far (modules, the app, the catalog, SQLAlchemy's mappers) lives as
# long as the process: out of the collector's sight, a full collection no longer walks it
# on the request path (a pause of tens of milliseconds in a worker, otherwise).
gc.collect()
gc.freeze()
