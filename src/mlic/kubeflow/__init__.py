"""The Kubeflow side of mlic: one kfp v2 Python component per step, the pipeline, and its CLI.

- `params`: the params.yaml subset each task receives (KFP's cache keys on task inputs).
- `layout`: artifacts hold files at their project-layout paths, staged into a temp `Paths` root.
- `fetch`: DVC-versioned data from a git repo at a pinned commit.
- `tasks`: what each component does, in typed functions (the component bodies only import them).
- `components`, `pipeline`: the kfp definitions; `local` runs them with kfp.local, `submit` sends
  them to a KFP API; `cli`: `mlic pipeline ...`.

Nothing here imports kfp at package import time: `mlic --help` stays fast.
"""
