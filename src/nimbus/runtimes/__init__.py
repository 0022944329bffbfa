"""Language runtimes: which ones this host offers, and the code that runs in a sandbox."""
