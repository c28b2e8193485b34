"""End-to-end TransiNet numerics: localise transients directly from a
(template, science) pair with a fully convolutional network, without image
differencing (after Sedaghat & Mahabal 2018).

Modules (imported explicitly by their users, so importing this package is cheap):

``normalization``
    Unit-invariant input stack (median-subtracted, common-sigma scaled, asinh
    stretched template and science, NaN -> 0, ``valid`` channel).
``architecture``
    `TransiNetUNet`, registered as ``"transinet_unet"`` (kind ``"segmentation"``).
``tiling``
    Seamless whole-detector inference in overlapping tiles.
``targets``
    Gaussian-blob targets and loss weights from a truth catalogue.
``peaks``
    Peak finding, sub-pixel positions, flags and a flux estimate.
``training`` / ``train_cli``
    Segmentation training loop (crops, dihedral augmentation, early stopping,
    safetensors checkpoints with exact resume) and its reproducible CLI.
``model``
    `TransiNetModel`: ``score_image`` and ``detect``; ``TransiNetModel.default()``
    loads the small model shipped in ``data/transinet_default.safetensors``.
``evaluate``
    Completeness versus SNR and false positives per detector.

Example::

    from lsst.meas.realbogus.transinet.model import TransiNetModel

    model = TransiNetModel.default()
    # The default model has a PSF-matched difference channel: pass the Gaussian-equivalent
    # PSF sigmas (pixels) of both images.
    score = model.score_image(template, science, template_variance, science_variance, mask,
                              science_psf_sigma=s_sci, template_psf_sigma=s_tmpl)
    sources = model.detect(template, science, template_variance, science_variance, mask,
                           score=score, wcs=wcs, science_psf_sigma=s_sci, template_psf_sigma=s_tmpl)
"""

from __future__ import annotations

__all__: list[str] = []
