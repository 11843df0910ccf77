"""What the API and the worker share, with no web or queue-consumer imports: settings, the database
(models, migrations, repositories), object storage and its key layout, queue names and enqueueing.

Importing any module here has no side effects (no files created, no connections opened)."""
