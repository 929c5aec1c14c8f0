"""The docs test's offline machine (tests/docs_blocks.py): connections fail at once.

The docs test cuts the network with proxies that point at a closed local
port. urllib3 retries a refused connection with exponential backoff; TFDS
asks for 10 retries, about 3.5 minutes of sleeping before its error. Here the
retries still happen but without the sleeps, so a block marked
`needs-network` reaches the error a user without the network sees, in
seconds.
"""

try:
    from urllib3.util.retry import Retry
except ImportError:  # pragma: no cover
    pass
else:
    Retry.sleep = lambda self, response=None: None
