"""Gene panels: save a refined feature list with its provenance, load it into another project.

Formats: GMT (gene symbols; readable by gseapy and decoupler), TSV (decoupler network
``source/target/weight``), JSON (everything, provenance included). See ``docs/panels.md``.
"""

from ._panel import Panel, convert, load, packaged_panel_dir, packaged_panels, save

__all__ = ["Panel", "save", "load", "convert", "packaged_panels", "packaged_panel_dir"]
