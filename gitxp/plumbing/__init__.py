"""The only code that imports dulwich or runs `git`: objects, trees, refs, the code snapshot."""
