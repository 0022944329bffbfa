"""``nimbus dev``: a local nimbus of its own, the functions of a folder deployed to it and
redeployed on save, their logs in one stream, and a debugger attached on request."""
