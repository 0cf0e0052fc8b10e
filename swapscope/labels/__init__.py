"""The labels every fake carries (DESIGN.md section 5): the invisible watermark and the frame
mark in the faces, Content Credentials, and reading them back (provenance). File formats,
records, readers and writers live apart, in ``swapscope.formats``."""
