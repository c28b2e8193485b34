"""End-to-end TransiNet numerics: localise transients directly from a
(template, science) pair with a fully convolutional network, without image
differencing.

Submodules are imported lazily by their users (``architecture``, ``normalization``,
``targets``, ``tiling``, ``peaks``, ``training``, ``model``) so that importing this
package stays cheap.
"""

from __future__ import annotations

__all__: list[str] = []
