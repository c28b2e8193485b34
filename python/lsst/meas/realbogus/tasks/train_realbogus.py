"""PipelineTask: train, validate and register a real/bogus model from a Butler repository.

One quantum per instrument gathers the difference images, science images, templates, diaSource
catalogues and truth tables of many (visit, detector) pairs, cuts and labels the candidates with
`lsst.meas.realbogus.candidates.make_candidates` (the same cutouts as inference), stores them in a
float16 `~lsst.meas.realbogus.stamp_dataset.StampStore` in a temporary directory (one detector's
images in memory at a time), splits train / validation / test by visit, trains with
`lsst.meas.realbogus.training.train_classifier` and writes the model package, a metrics dictionary
and diagnostic plots evaluated on the test visits.
"""

from __future__ import annotations

__all__ = [
    "PLOT_NAMES",
    "RealBogusTrainConfig",
    "RealBogusTrainConnections",
    "RealBogusTrainTask",
]

import json
import math
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from astropy.table import Table
from lsst.pex.config import Field, ListField
from lsst.pipe.base import (
    NoWorkFound,
    PipelineTask,
    PipelineTaskConfig,
    PipelineTaskConnections,
    Struct,
)
from lsst.pipe.base import connectionTypes as cT
from lsst.utils.timer import timeMethod

_VISIT_DETECTOR = ("instrument", "visit", "detector")

PLOT_NAMES: tuple[str, ...] = ("roc", "score_hist", "completeness_snr", "reliability", "worst")
"""Suffixes of the plot outputs: connection ``plot_<name>``, dataset type ``realbogus_plot_<name>``."""


class RealBogusTrainConnections(PipelineTaskConnections, dimensions=("instrument",)):
    """Connections of `RealBogusTrainTask`."""

    difference_images = cT.Input(
        doc="Difference images (science - PSF-matched template) of the training visits.",
        name="difference_image",
        storageClass="DifferenceImage",
        dimensions=_VISIT_DETECTOR,
        multiple=True,
        deferLoad=True,
    )
    science_images = cT.Input(
        doc="Science images of the training visits.",
        name="preliminary_visit_image",
        storageClass="VisitImage",
        dimensions=_VISIT_DETECTOR,
        multiple=True,
        deferLoad=True,
    )
    templates = cT.Input(
        doc="Templates warped to the science pixel grids.",
        name="template_detector",
        storageClass="VisitImage",
        dimensions=_VISIT_DETECTOR,
        multiple=True,
        deferLoad=True,
    )
    dia_sources = cT.Input(
        doc="diaSources detected on the difference images: the training candidates.",
        name="dia_source_unstandardized",
        storageClass="ArrowAstropy",
        dimensions=_VISIT_DETECTOR,
        multiple=True,
        deferLoad=True,
    )
    truths = cT.Input(
        doc="Truth catalogues of the simulated transients and artefacts (the labels).",
        name="truth_transients",
        storageClass="ArrowAstropy",
        dimensions=_VISIT_DETECTOR,
        multiple=True,
        deferLoad=True,
    )
    model = cT.Output(
        doc="The trained, calibrated model package; no dimensions, so inference finds it by collection.",
        name="realbogus_model",
        storageClass="RealBogusModelPackage",
        dimensions=(),
    )
    train_metrics = cT.Output(
        doc="Metrics on the test visits (ROC, precision-recall, purity and completeness vs threshold, "
        "completeness vs SNR, per-type rates, calibration), validation summary, history and splits.",
        name="realbogus_train_metrics",
        storageClass="StructuredDataDict",
        dimensions=(),
    )
    plot_roc = cT.Output(
        doc="ROC curve on the test visits (PNG).",
        name="realbogus_plot_roc",
        storageClass="Plot",
        dimensions=(),
    )
    plot_score_hist = cT.Output(
        doc="Score histograms of real and bogus test candidates (PNG).",
        name="realbogus_plot_score_hist",
        storageClass="Plot",
        dimensions=(),
    )
    plot_completeness_snr = cT.Output(
        doc="Completeness of real test candidates vs truth SNR at the model threshold (PNG).",
        name="realbogus_plot_completeness_snr",
        storageClass="Plot",
        dimensions=(),
    )
    plot_reliability = cT.Output(
        doc="Reliability diagram of the calibrated test scores (PNG).",
        name="realbogus_plot_reliability",
        storageClass="Plot",
        dimensions=(),
    )
    plot_worst = cT.Output(
        doc="Worst false positives and false negatives as (template, science, difference) triplets (PNG).",
        name="realbogus_plot_worst",
        storageClass="Plot",
        dimensions=(),
    )

    def __init__(self, *, config: RealBogusTrainConfig | None = None) -> None:
        super().__init__(config=config)
        if config is not None and not config.do_plots:
            for name in PLOT_NAMES:
                delattr(self, f"plot_{name}")


def _check_json_object(value: str | None) -> bool:
    if value is None:
        return True
    try:
        return isinstance(json.loads(value), dict)
    except ValueError:
        return False


class RealBogusTrainConfig(PipelineTaskConfig, pipelineConnections=RealBogusTrainConnections):
    """Configuration of `RealBogusTrainTask` (training settings mirror `TrainingConfig`)."""

    architecture = Field[str](doc="Architecture registry name.", default="rb3_cnn")
    architecture_kwargs = Field[str](
        doc="JSON object of architecture keyword arguments (in_channels/size are filled in).",
        default="{}",
        check=_check_json_object,
    )
    normalization = Field[str](
        doc="JSON object of NormalizationSpec parameters; None uses the default normalisation.",
        default=None,
        optional=True,
        check=_check_json_object,
    )
    channels = ListField[str](
        doc="Channels the model takes, in its order (any of science, template, difference).",
        default=["template", "science", "difference"],
        itemCheck=lambda c: c in ("science", "template", "difference"),
        minLength=1,
    )
    cutout_size = Field[int](doc="Stamp side length in pixels.", default=51, check=lambda n: n > 0)
    match_radius_arcsec = Field[float](
        doc="A candidate is real iff it matches a truth transient within this radius (arcsec).",
        default=0.5,
        check=lambda r: r > 0,
    )
    classify_artifacts = Field[bool](
        doc="Name the artefact each bogus candidate falls on (for per-type rejection rates).",
        default=True,
    )
    split_fractions = ListField[float](
        doc="Fractions of candidates for train, validation and test; the split is by visit.",
        default=[0.7, 0.15, 0.15],
        length=3,
        itemCheck=lambda f: f >= 0,
    )
    epochs = Field[int](doc="Maximum number of epochs.", default=20, check=lambda n: n > 0)
    batch_size = Field[int](doc="Training batch size.", default=128, check=lambda n: n > 0)
    lr = Field[float](doc="AdamW learning rate.", default=1e-3, check=lambda x: x > 0)
    lr_schedule = Field[str](
        doc="Learning-rate schedule: 'constant', or 'cosine' (decay over ``epochs`` to 2 % of ``lr``).",
        default="constant",
        check=lambda s: s in ("constant", "cosine"),
    )
    weight_decay = Field[float](doc="AdamW weight decay.", default=1e-4, check=lambda x: x >= 0)
    class_balance = Field[str](
        doc="Class balancing: 'weight' (BCE pos_weight), 'sample' (balanced sampling) or 'none'.",
        default="weight",
        check=lambda s: s in ("weight", "sample", "none"),
    )
    augment = Field[bool](doc="Random rotations/flips of the training stamps.", default=True)
    occlusion_probability = Field[float](
        doc="Fraction of training stamps (both classes) given a random block or line of missing pixels "
        "away from the centre, so that missing data beside a source is not learnt as a sign of an "
        "artefact (lsst.meas.realbogus.stamp_dataset.draw_occlusions); 0 turns it off.",
        default=0.0,
        check=lambda p: 0.0 <= p <= 1.0,
    )
    patience = Field[int](
        doc="Early stopping after this many epochs without validation-loss improvement.",
        default=5,
        check=lambda n: n >= 0,
    )
    seed = Field[int](doc="Seed of the split, initial weights, data order and augmentation.", default=0)
    target_purity = Field[float](
        doc="Purity (at validation prevalence) the model threshold is chosen for.",
        default=0.99,
        check=lambda p: 0 < p <= 1,
    )
    version = Field[str](
        doc="Model version recorded in the package (at most 7 characters).",
        default="0.1.0",
        check=lambda v: 0 < len(v) <= 7,
    )
    num_threads = Field[int](
        doc="torch threads during training (1 gives bitwise-reproducible CPU training).",
        default=1,
        check=lambda n: n > 0,
    )
    device = Field[str](doc="Torch device: cpu, cuda, cuda:N or auto.", default="cpu")
    checkpoint_dir = Field[str](
        doc="Directory for per-epoch checkpoints; an interrupted run resumes from it. None: no checkpoints.",
        default=None,
        optional=True,
    )
    resume = Field[bool](doc="Resume from a checkpoint in checkpoint_dir if there is one.", default=True)
    stamp_store_dir = Field[str](
        doc="Parent directory of the temporary float16 stamp store; None uses the system temporary "
        "directory.  Needs about 6 * cutout_size**2 bytes per candidate.",
        default=None,
        optional=True,
    )
    do_plots = Field[bool](doc="Write the diagnostic plots.", default=True)
    n_worst = Field[int](
        doc="Number of worst false positives and of worst false negatives in the gallery.",
        default=6,
        check=lambda n: n > 0,
    )
    max_curve_points = Field[int](
        doc="Maximum number of points kept per curve (ROC, precision-recall, purity/completeness).",
        default=500,
        check=lambda n: n >= 2,
    )

    def validate(self) -> None:
        """Validate the fields and check that train and validation fractions are positive."""
        super().validate()
        if sum(self.split_fractions[:2]) <= 0 or self.split_fractions[0] <= 0 or self.split_fractions[1] <= 0:
            raise ValueError(
                f"split_fractions needs positive train and validation fractions: {self.split_fractions}"
            )

    def make_training_config(self) -> Any:
        """Return the `lsst.meas.realbogus.training.TrainingConfig` of these settings.

        Returns
        -------
        config : `lsst.meas.realbogus.training.TrainingConfig`
            The training configuration.
        """
        from ..normalization import NormalizationSpec
        from ..training import TrainingConfig

        spec = NormalizationSpec.from_dict(json.loads(self.normalization)) if self.normalization else None
        config = TrainingConfig(
            architecture=self.architecture,
            architecture_kwargs=json.loads(self.architecture_kwargs),
            channels=tuple(self.channels),
            cutout_size=self.cutout_size,
            normalization=spec,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            lr_schedule=self.lr_schedule,
            weight_decay=self.weight_decay,
            class_balance=self.class_balance,
            augment=self.augment,
            occlusion_probability=self.occlusion_probability,
            patience=self.patience,
            seed=self.seed,
            target_purity=self.target_purity,
            num_threads=self.num_threads,
            device=self.device,
            version=self.version,
        )
        config.validate()
        return config


def _load(obj: Any) -> Any:
    """Return the in-memory dataset of a deferred handle, or the object itself."""
    from lsst.daf.butler import DeferredDatasetHandle

    return obj.get() if isinstance(obj, DeferredDatasetHandle) else obj


def _thin(n: int, max_points: int) -> np.ndarray:
    """Return indices of at most ``max_points`` points spread evenly over ``n`` (first and last kept)."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))


class RealBogusTrainTask(PipelineTask):
    """Train, validate and register a real/bogus classifier from Butler datasets.

    Candidates are the diaSources of every input (visit, detector), cut with
    `~lsst.meas.realbogus.candidates.make_candidates` exactly as inference cuts them, and
    labelled real iff they match a ``category == "transient"`` truth entry within
    ``match_radius_arcsec``.  No visit is in two of the train / validation / test splits.  The
    model threshold is chosen on the validation visits for ``target_purity``; the metrics and
    plots are measured on the test visits (on the validation visits, with a warning, if the
    test visits lack real or bogus candidates).
    """

    ConfigClass = RealBogusTrainConfig
    _DefaultName = "trainRealBogus"

    config: RealBogusTrainConfig

    def runQuantum(self, butlerQC: Any, inputRefs: Any, outputRefs: Any) -> None:
        """Pair the inputs by (visit, detector), run, and write the outputs.

        (visit, detector) pairs lacking one of the five inputs are left out with a warning.
        """
        inputs = butlerQC.get(inputRefs)
        names = ("difference_images", "science_images", "templates", "dia_sources", "truths")
        by_key: dict[str, dict[tuple[int, int], Any]] = {
            name: {(int(h.dataId["visit"]), int(h.dataId["detector"])): h for h in inputs[name]}
            for name in names
        }
        common = sorted(set.intersection(*(set(v) for v in by_key.values())))
        for name, handles in by_key.items():
            extra = sorted(set(handles) - set(common))
            if extra:
                self.log.warning(
                    "Ignoring %d %s inputs without all other inputs: %s", len(extra), name, extra
                )
        if not common:
            raise NoWorkFound("No (visit, detector) has all of the training inputs.")
        outputs = self.run(**{name: [by_key[name][k] for k in common] for name in names})
        butlerQC.put(outputs, outputRefs)

    @timeMethod
    def run(
        self,
        difference_images: Sequence[Any],
        science_images: Sequence[Any],
        templates: Sequence[Any],
        dia_sources: Sequence[Any],
        truths: Sequence[Any],
    ) -> Struct:
        """Gather candidates, train, evaluate on held-out visits and make the diagnostics.

        Every argument is a sequence with one entry per (visit, detector), in the same order; an
        entry may be the in-memory dataset or a `lsst.daf.butler.DeferredDatasetHandle` (images
        are read one (visit, detector) at a time).

        Parameters
        ----------
        difference_images : sequence of `lsst.images.DifferenceImage`
            Difference images (their mask marks unusable pixels).
        science_images, templates : sequence of `lsst.images.VisitImage`
            Science images and templates on the same pixel grids.
        dia_sources : sequence of `astropy.table.Table`
            diaSource catalogues (``id``, ``visit``, ``x``, ``y``, ``psf_flux``, ``psf_flux_err``).
        truths : sequence of `astropy.table.Table`
            Truth catalogues.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``model`` (`~lsst.meas.realbogus.model_package.ModelPackage`), ``train_metrics``
            (`dict`), ``plot_<name>`` (`matplotlib.figure.Figure`, if ``do_plots``) for each of
            `PLOT_NAMES`, and ``history`` (per-epoch `list` of `dict`).

        Raises
        ------
        ValueError
            Raised if the sequences have different lengths, or a split lacks real or bogus
            candidates.
        lsst.pipe.base.NoWorkFound
            Raised if there are no inputs or no candidates.
        """
        from ..stamp_dataset import StampStore

        lengths = {len(difference_images), len(science_images), len(templates), len(dia_sources), len(truths)}
        if len(lengths) != 1:
            raise ValueError(
                "difference_images, science_images, templates, dia_sources and truths must have one entry "
                f"per (visit, detector) each; got lengths {sorted(lengths)}."
            )
        if not difference_images:
            raise NoWorkFound("No inputs to train on.")
        catalogs = [_load(c) for c in dia_sources]
        total = sum(len(c) for c in catalogs)
        if total == 0:
            raise NoWorkFound(f"The {len(catalogs)} diaSource catalogues are empty: nothing to train on.")
        with tempfile.TemporaryDirectory(prefix="realbogus_stamps_", dir=self.config.stamp_store_dir) as tmp:
            writer = StampStore.create(tmp, total, self._store_channels(), self.config.cutout_size)
            extra = self.gather(writer, difference_images, science_images, templates, catalogs, truths)
            del writer
            store = StampStore.open(tmp)
            result = self.train_and_evaluate(store, extra)
            del store
        return result

    @staticmethod
    def _store_channels() -> tuple[str, ...]:
        from ..candidates import ALERT_CHANNELS

        return ALERT_CHANNELS

    def gather(
        self,
        store: Any,
        difference_images: Sequence[Any],
        science_images: Sequence[Any],
        templates: Sequence[Any],
        catalogs: Sequence[Table],
        truths: Sequence[Any],
    ) -> dict[str, np.ndarray]:
        """Cut and label the candidates of every (visit, detector) into a stamp store.

        Parameters
        ----------
        store : `lsst.meas.realbogus.stamp_dataset.StampStore`
            Appendable store with room for every catalogue row (channels science, template,
            difference).
        difference_images, science_images, templates, truths : sequence
            As for `run` (datasets or deferred handles).
        catalogs : sequence of `astropy.table.Table`
            diaSource catalogues.

        Returns
        -------
        extra : `dict` [`str`, `numpy.ndarray`]
            Per stored candidate: ``ids``, ``visit``, ``detector``, ``detection_snr``.
        """
        from ..butler.images import exposure_to_arrays, image_array, sky_projection_pixel_scale
        from ..candidates import make_candidates
        from ..simulation import classify_negatives

        extra: dict[str, list[np.ndarray]] = {"ids": [], "visit": [], "detector": [], "detection_snr": []}
        start = time.monotonic()
        n_pairs = len(catalogs)
        for i, catalog in enumerate(catalogs):
            if len(catalog) == 0:
                continue
            handle = difference_images[i]
            difference = _load(handle)
            diff = exposure_to_arrays(difference)
            pixel_scale = sky_projection_pixel_scale(difference.sky_projection)
            del difference
            science = image_array(_load(science_images[i]))
            template = image_array(_load(templates[i]))
            for name, image in (("science image", science), ("template", template)):
                if image.shape != diff.image.shape:
                    raise ValueError(
                        f"{name} of input {i} has shape {image.shape}, "
                        f"its difference image {diff.image.shape}."
                    )
            cands = make_candidates(
                science,
                template,
                diff.image,
                catalog,
                truth=_load(truths[i]),
                mask=diff.mask,
                cutout_size=self.config.cutout_size,
                match_radius_pix=self.config.match_radius_arcsec / pixel_scale,
                classify_negatives=classify_negatives if self.config.classify_artifacts else None,
            )
            data_id = getattr(handle, "dataId", None)
            visit = int(data_id["visit"]) if data_id is not None else diff.visit
            detector = int(data_id["detector"]) if data_id is not None else diff.detector
            if "visit" not in catalog.colnames and visit is not None:
                cands.visit[:] = visit
            if "detector" not in catalog.colnames:
                cands.detector[:] = detector
            store.append(
                cands.stamps,
                cands.labels,
                snr=np.where(cands.labels, np.abs(cands.truth_snr), cands.snr),
                groups=cands.visit,
                types=cands.types,
            )
            extra["ids"].append(cands.ids)
            extra["visit"].append(cands.visit)
            extra["detector"].append(cands.detector)
            extra["detection_snr"].append(cands.snr)
            self.log.info(
                "Gathered visit %s detector %s: %d candidates (%d real); %d/%d done, %d stored, %.1f s.",
                visit,
                detector,
                len(cands),
                int(cands.labels.sum()),
                i + 1,
                n_pairs,
                len(store),
                time.monotonic() - start,
            )
            del cands, science, template, diff
        return {k: np.concatenate(v) for k, v in extra.items()}

    def split(self, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Split candidates into train / validation / test by visit.

        Parameters
        ----------
        groups : `numpy.ndarray`
            Visit of each candidate.

        Returns
        -------
        train, val, test : `numpy.ndarray`
            Row indices of each split (``test`` is empty if its fraction is 0).
        """
        from ..training import split_by_group

        fractions = list(self.config.split_fractions)
        n_needed = sum(1 for f in fractions if f > 0)
        n_visits = np.unique(groups).size
        if n_visits < n_needed:
            raise ValueError(
                f"Splitting by visit needs at least {n_needed} visits with candidates; got {n_visits}."
            )
        return split_by_group(groups, fractions, seed=self.config.seed)

    def train(
        self,
        train_source: Any,
        val_source: Any,
        *,
        stop_after_epoch: int | None = None,
    ) -> Any:
        """Train with `lsst.meas.realbogus.training.train_classifier` and this task's settings.

        Parameters
        ----------
        train_source, val_source : `lsst.meas.realbogus.stamp_dataset.StampSource`
            Training and validation stamps.
        stop_after_epoch : `int`, optional
            Stop after this many epochs in total, leaving the checkpoint (as an interruption would).

        Returns
        -------
        result : `lsst.meas.realbogus.training.TrainingResult`
            The trained, calibrated module and its metadata.
        """
        from ..training import train_classifier

        return train_classifier(
            train_source,
            val_source,
            self.config.make_training_config(),
            checkpoint_dir=self.config.checkpoint_dir,
            resume=self.config.resume,
            log=self.log,
            stop_after_epoch=stop_after_epoch,
        )

    def train_and_evaluate(self, store: Any, extra: dict[str, np.ndarray] | None = None) -> Struct:
        """Split a stamp store by visit, train, and evaluate on the test visits.

        Parameters
        ----------
        store : `lsst.meas.realbogus.stamp_dataset.StampStore`
            The labelled candidates (``groups`` are visits).
        extra : `dict`, optional
            Per-candidate ``detector`` and ``detection_snr`` (from `gather`), for bookkeeping.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            As for `run`.
        """
        from .. import metrics
        from ..model_package import ModelPackage
        from ..normalization import NormalizationSpec
        from ..stamp_dataset import IndexedStampSource
        from ..training import predict_scores

        groups = np.asarray(store.groups)
        labels_all = np.asarray(store.labels).astype(np.int64)
        train_idx, val_idx, test_idx = self.split(groups)
        splits = {"train": train_idx, "validation": val_idx, "test": test_idx}
        split_info = {
            name: {
                "visits": sorted(int(v) for v in np.unique(groups[idx])),
                "n": int(idx.size),
                "n_real": int(labels_all[idx].sum()),
            }
            for name, idx in splits.items()
        }
        for name, info in split_info.items():
            self.log.info(
                "%s split: %d candidates (%d real) from visits %s.",
                name,
                info["n"],
                info["n_real"],
                info["visits"],
            )
        for name in ("train", "validation"):
            info = split_info[name]
            if info["n_real"] == 0 or info["n_real"] == info["n"]:
                raise ValueError(
                    f"The {name} visits {info['visits']} have {info['n_real']} real of {info['n']} "
                    "candidates: both classes are needed; add visits or change split_fractions/seed."
                )
        train_src = IndexedStampSource(store, train_idx)
        val_src = IndexedStampSource(store, val_idx)
        t0 = time.monotonic()
        result = self.train(train_src, val_src)
        train_seconds = time.monotonic() - t0
        meta = result.metadata
        config = self.config.make_training_config()
        spec = config.normalization if config.normalization is not None else NormalizationSpec()

        test_info = split_info["test"]
        if test_info["n"] and 0 < test_info["n_real"] < test_info["n"]:
            evaluated_on, eval_idx = "test", test_idx
            eval_src = IndexedStampSource(store, test_idx)
            scores = predict_scores(result.module, eval_src, config.channels, spec, device=self.config.device)
        else:
            self.log.warning(
                "Test visits %s have %d real of %d candidates: metrics and plots use the validation visits.",
                test_info["visits"],
                test_info["n_real"],
                test_info["n"],
            )
            evaluated_on, eval_idx, eval_src = "validation", val_idx, val_src
            scores = np.asarray(result.val_scores, dtype=np.float64)
        labels = labels_all[eval_idx]
        snr = np.asarray(eval_src.snr, dtype=np.float64)
        types = np.asarray(eval_src.types).astype(str)
        threshold = float(meta.threshold)
        summary = metrics.summarize(
            scores,
            labels,
            snr=np.where(np.isfinite(snr), snr, 0.0),
            types=types,
            threshold=threshold,
            target_purity=self.config.target_purity,
        )
        fpr, tpr, roc_thr = metrics.roc_curve(scores, labels)
        keep = _thin(fpr.size, self.config.max_curve_points)
        precision, recall, pr_thr, _ = metrics.precision_recall(scores, labels)
        keep_pr = _thin(pr_thr.size, self.config.max_curve_points)
        curves = metrics.purity_completeness(scores, labels)
        keep_pc = _thin(curves["threshold"].size, self.config.max_curve_points)
        snr6 = (labels == 1) & (snr >= 6)
        train_metrics = metrics.to_jsonable(
            {
                "evaluated_on": evaluated_on,
                "model_version": meta.version,
                "threshold": threshold,
                "target_purity": self.config.target_purity,
                "summary": summary,
                "completeness_snr_ge_6": float((scores[snr6] >= threshold).mean())
                if snr6.any()
                else math.nan,
                "roc": {"fpr": fpr[keep], "tpr": tpr[keep], "threshold": roc_thr[keep]},
                "precision_recall": {
                    "precision": precision[:-1][keep_pr],
                    "recall": recall[:-1][keep_pr],
                    "threshold": pr_thr[keep_pr],
                },
                "purity_completeness": {k: v[keep_pc] for k, v in curves.items()},
                "validation": meta.metrics,
                "splits": split_info,
                "history": result.history,
                "training_seconds": train_seconds,
                "n_detectors": int(np.unique(extra["detector"]).size) if extra else None,
            }
        )
        self.log.info(
            "%s visits: AUC %.4f, purity %.4f and completeness %.4f at threshold %.4f, ECE %.4f; "
            "training took %.1f s.",
            evaluated_on,
            summary["auc"],
            math.nan if summary["purity"] is None else summary["purity"],
            summary["completeness"],
            threshold,
            math.nan if summary.get("ece") is None else summary["ece"],
            train_seconds,
        )
        package = ModelPackage(
            metadata=meta,
            state_dict={
                k: v.detach().cpu().contiguous().clone() for k, v in result.module.state_dict().items()
            },
        )
        out = Struct(model=package, train_metrics=train_metrics, history=result.history)
        if self.config.do_plots:
            for name, fig in self.make_plots(eval_src, scores, labels, snr, threshold).items():
                setattr(out, f"plot_{name}", fig)
        return out

    def make_plots(
        self, source: Any, scores: np.ndarray, labels: np.ndarray, snr: np.ndarray, threshold: float
    ) -> dict[str, Any]:
        """Make the diagnostic figures.

        Parameters
        ----------
        source : `lsst.meas.realbogus.stamp_dataset.StampSource`
            The evaluated stamps (for the gallery).
        scores, labels, snr : `numpy.ndarray`
            Scores, labels and SNR (truth SNR for real candidates) of ``source``.
        threshold : `float`
            The model threshold.

        Returns
        -------
        figures : `dict` [`str`, `matplotlib.figure.Figure`]
            One figure per name of `PLOT_NAMES`.
        """
        from .. import plots

        n = self.config.n_worst
        bogus = np.nonzero(labels == 0)[0]
        real = np.nonzero(labels == 1)[0]
        worst = np.r_[
            bogus[np.argsort(-scores[bogus], kind="stable")][:n],
            real[np.argsort(scores[real], kind="stable")][:n],
        ]
        ok = np.isfinite(snr)
        return {
            "roc": plots.plot_roc(scores, labels),
            "score_hist": plots.plot_score_histograms(scores, labels, threshold=threshold),
            "completeness_snr": plots.plot_completeness_vs_snr(scores[ok], labels[ok], snr[ok], threshold),
            "reliability": plots.plot_reliability_diagram(scores, labels),
            "worst": plots.plot_worst_examples(
                source.read(worst), scores[worst], labels[worst], channels=source.channels, n=n
            ),
        }
