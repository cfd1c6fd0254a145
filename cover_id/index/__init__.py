"""The index engine: catalog scanning, building, the on-disk store and the vote shortlist.

Modules: :mod:`.catalog` (which files are references), :mod:`.build` (streaming,
incremental builds), :mod:`.store` (the index folder: SQLite records + segment files),
:mod:`.vote` (keypoint-vote shortlist). Nothing heavy is imported here.
"""
