# Sphinx configuration for the qzns documentation.
# Build: sphinx-build -W -q -b html docs /tmp/docs-out   (man pages: -b man)
# Only what Debian 12's python3-sphinx ships: no third-party extensions or themes.

project = "qzns"
author = "the qzns authors"
copyright = "the qzns authors"

root_doc = "index"
extensions = []
exclude_patterns = ["_build"]
templates_path = []
html_static_path = []
html_theme = "alabaster"
highlight_language = "none"
pygments_style = "sphinx"

# Warn about every unresolved reference so `-W` catches broken links.
nitpicky = True

# `sphinx-build -b man docs OUT` renders the command references as man pages; meson builds and
# installs them (docs/meson.build). Flat output (OUT/qzns-img.1), not OUT/man1/qzns-img.1.
man_make_section_directory = False
man_pages = [
    ("tools/qzns-img", "qzns-img", "create, inspect, check and convert zoned qcow2 images",
     [author], 1),
    ("tools/qzns-io", "qzns-io", "run I/O and zone commands against a (zoned) image",
     [author], 1),
    ("tools/qzns-storage-daemon", "qzns-storage-daemon",
     "serve zoned images over NVMe/TCP and vfio-user, with a QMP monitor", [author], 8),
]
