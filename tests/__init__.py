"""lightning-xai test suite (a package, so spawned DDP workers import it by name)."""
