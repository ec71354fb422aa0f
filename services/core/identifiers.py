"""A ticket's, a customer's or a key's id: 1-128 letters, digits and . _ : @ - (the
bodies' fields, the paths' parameters, the records' `ticketid` attribute and the stores'
columns alike)."""

from __future__ import annotations

from services.core import text_forms

ID = text_forms.Form(r"^[A-Za-z0-9._:@-]+$",
                     "an id of ASCII letters, digits and the characters . _ : @ -")
MAX_LENGTH = 128
