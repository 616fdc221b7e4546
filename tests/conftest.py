"""Makes ``tests/`` importable for helpers shared by the test folders (``shared_data``)."""
