"""psyqa ingestion: turns corpus files into the index."""
