"""Image sources and the OCI image-layout builder of the node test bed (see build.py)."""
