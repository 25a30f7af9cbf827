"""``python -m redis_gocache``: the same as the ``redis-gocache`` command."""

from redis_gocache.cli import main

main()
