"""Cluster mode: worker nodes announce themselves, servers place invocations on them."""
