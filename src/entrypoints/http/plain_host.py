"""The Host values the fast paths accept: a subset of what Litestar accepts (it answers 400 to
what it cannot use); a request with any other Host goes to the framework."""

import re

PLAIN_HOST = re.compile(rb"[A-Za-z0-9.:\[\]-]{1,255}")
