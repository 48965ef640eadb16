"""Git hook scripts that `gitxp hooks install` chains into a repository (shipped as gitxp._hooks)."""
