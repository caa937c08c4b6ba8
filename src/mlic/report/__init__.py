"""`mlic report`: one offline page of a run, and of what changed between two versions.

`revisions` reads the committed metrics at any git revision through DVC's API; `document` renders
the tables and pictures as Markdown (PNGs beside it) and as one self-contained HTML file (PNGs
embedded), with no external URL anywhere, so the page opens on an air-gapped machine.
"""
