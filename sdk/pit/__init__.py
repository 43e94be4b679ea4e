"""Alpha's point-in-time engine and the Feast offline store built on it."""
