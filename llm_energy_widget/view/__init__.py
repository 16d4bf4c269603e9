"""Views of a run that need no frontend: the kernel-side image (`png`) and the output bundle a
finished run leaves in a notebook (`saved`)."""

__all__: list[str] = []
