"""The studio: a web app where a person is the client, the critic's notes are editable boxes, and every accepted
revision becomes a training pair (``artaug studio``).

- ``Studio.load(config)`` / ``Session`` (``session.py``): the models loaded once, and one tab's run: paint →
  critique → repaint the boxes on screen → the judge's verdict → the person decides; run folder and trail as
  ``artaug paint`` writes them;
- ``boxes.py``: the editor's boxes ↔ ``Edit`` objects (the boundary for what a browser sends);
- ``pairs.py``: accepted revisions committed as store pairs with provenance ``person``; reviewing a store's pairs;
- ``handlers.py``: what each button does, testable without a browser;
- ``app.py``: the Gradio page and its server (``build_app``, ``serve``), queue and safety rules.

Gradio is imported only by ``app.py``; ``pip install -e '.[studio]'`` installs it.
"""

from artaug.studio.session import Cancelled, Session, Studio

__all__ = ["Cancelled", "Session", "Studio"]
