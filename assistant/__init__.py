"""psyqa assistant: reads the index and answers with citations."""
