"""`python -m temporal_hello_starter`: the HTTP starter on port 8000."""

import logging
import os

from aiohttp import web

from .app import create_app

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
web.run_app(create_app(), port=int(os.environ.get("PORT", "8000")), access_log=None)
