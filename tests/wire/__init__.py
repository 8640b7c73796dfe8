"""Wire tests: the real client libraries against fake servers on loopback."""
