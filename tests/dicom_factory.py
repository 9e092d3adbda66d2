"""Synthetic DICOM MR series written with pydicom, for the DICOM reader's tests and benchmark.

Two writers: :func:`write_classic_series` (MR Image Storage, one file per slice
per time point) and :func:`write_enhanced_series` (Enhanced MR Image Storage,
one multi-frame file with per-frame functional groups, DICOM PS3.3 C.8.13).
Both use explicit VR little endian and describe the geometry the way a scanner
does (Image Position/Orientation (Patient), PS3.3 C.7.6.2), so the reader and
dcm2niix can be checked against the same files.

``pixels`` is always indexed ``[t, z, row, column]`` as the DICOM pixel data
stores it: ``z`` is the acquisition (instance) order of the slices, ``row``
runs along the column direction cosine and ``column`` along the row direction
cosine. :meth:`SeriesSpec.lps` gives the patient (LPS) position of a pixel by
the standard formula, independently of any reader.
"""

from __future__ import annotations

import datetime as _dt
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (EnhancedMRImageStorage, ExplicitVRLittleEndian, MRImageStorage,
                         generate_uid)

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)


def oblique_iop(deg_x: float = 17.0, deg_z: float = 11.0) -> tuple:
    """An axial orientation tilted about x then rotated about z (row, column cosines)."""
    ax, az = np.deg2rad(deg_x), np.deg2rad(deg_z)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    rot = rz @ rx
    return tuple(np.round(np.concatenate([rot[:, 0], rot[:, 1]]), 8))


@dataclass
class SeriesSpec:
    """What was written: geometry, timing and the files, for checking a reader."""

    pixels: np.ndarray            # (T, Z, rows, cols) stored values
    iop: np.ndarray               # (6,)
    positions: np.ndarray         # (Z, 3) Image Position (Patient) of each slice, LPS mm
    pixel_spacing: tuple          # (row spacing, column spacing) mm
    times: np.ndarray             # (T, Z) acquisition time, s from the first frame
    slope: float
    intercept: float
    series_uid: str
    files: list = field(default_factory=list)

    @property
    def scaled(self) -> np.ndarray:
        return self.pixels.astype(np.float64) * self.slope + self.intercept

    def lps(self, z: int, row: int, col: int) -> np.ndarray:
        """Patient position of pixel (row, col) of slice z (PS3.3 C.7.6.2.1.1)."""
        r, c = self.iop[:3], self.iop[3:]
        return (self.positions[z] + col * self.pixel_spacing[1] * r
                + row * self.pixel_spacing[0] * c)


def _tm(seconds: float) -> str:
    seconds = seconds % 86400.0
    h = int(seconds // 3600)
    m = int((seconds - 3600 * h) // 60)
    s = seconds - 3600 * h - 60 * m
    return f"{h:02d}{m:02d}{s:09.6f}"


def _ds_str(value: float) -> str:
    return f"{value:.10g}"


def _base(sop_class, series_uid, study_uid, frame_uid, *, series_number, description,
          protocol, te_ms, tr_ms, flip, field_t, rows, cols, dtype):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = "20240102"
    ds.StudyTime = ds.SeriesTime = "095000"
    ds.Modality = "MR"
    ds.Manufacturer = "perfmap-tests"
    ds.PatientName = "Phantom^DSC"
    ds.PatientID = "PHANTOM01"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_uid
    ds.StudyID = "1"
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    ds.ProtocolName = protocol
    ds.MagneticFieldStrength = _ds_str(field_t)
    ds.PatientPosition = "HFS"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    bits = np.dtype(dtype).itemsize * 8
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if np.dtype(dtype).kind == "i" else 0
    if sop_class == MRImageStorage:
        ds.ScanningSequence, ds.SequenceVariant, ds.MRAcquisitionType = "EP", "SK", "2D"
        ds.RepetitionTime = _ds_str(tr_ms)
        ds.EchoTime = _ds_str(te_ms)
        ds.FlipAngle = _ds_str(flip)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    return ds


def _positions(origin, iop, n, spacing, descending):
    normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
    steps = np.arange(n, dtype=float) * spacing * (-1.0 if descending else 1.0)
    return np.asarray(origin, float)[None, :] + steps[:, None] * normal[None, :]


def _times(t, z, frame_interval, jitter, seed):
    times = (np.arange(t)[:, None] * frame_interval
             + np.arange(z)[None, :] * (frame_interval / max(z, 1)))
    if jitter:
        rng = np.random.default_rng(seed + 7)
        times = times + rng.uniform(-jitter, jitter, size=(t, 1))
        times -= times[0, 0]
    return times


def write_classic_series(directory, pixels, *, iop=AXIAL, origin=(-110.0, -95.0, -20.0),
                         pixel_spacing=(1.8, 1.6), slice_spacing=5.0, descending=False,
                         frame_interval=1.5, timing="acquisition", start="095959.5",
                         slope=1.0, intercept=0.0, series_number=5,
                         description="ep2d_perf", protocol="ep2d_perf_p2",
                         series_uid: Optional[str] = None, te_ms=30.0, tr_ms=None,
                         flip=90.0, field_t=3.0, omit: Sequence = (),
                         duplicate: Sequence = (), jitter: float = 0.0, seed: int = 0,
                         subfolders: bool = True) -> SeriesSpec:
    """Write one classic (single-frame) MR series: one file per slice per time point.

    Parameters
    ----------
    directory : path
        Folder to write into (created). Files get random names without extension,
        spread over two sub-folders when ``subfolders``; order on disk is random.
    pixels : ndarray, shape (T, Z, rows, cols)
        Stored values (uint16 or int16).
    timing : {"acquisition", "trigger", "tpi", "none"}
        Where frame timing goes: AcquisitionTime per image; TriggerTime (ms) with one
        constant AcquisitionTime; TemporalPositionIdentifier plus AcquisitionTime; or
        nothing but InstanceNumber.
    start : str
        AcquisitionTime (HHMMSS.frac) of the first image; near midnight to test wrapping.
    omit, duplicate : sequence of (t, z)
        Images to leave out, or to write twice (second copy: new file name, same content).
    jitter : float
        Uniform random offset (s) added to each time point (non-uniform sampling).
    """
    directory = Path(directory)
    pixels = np.asarray(pixels)
    n_t, n_z, rows, cols = pixels.shape
    tr_ms = frame_interval * 1000.0 if tr_ms is None else tr_ms
    rng = np.random.default_rng(seed)
    series_uid = series_uid or generate_uid()
    study_uid, frame_uid = generate_uid(), generate_uid()
    positions = _positions(origin, iop, n_z, slice_spacing, descending)
    times = _times(n_t, n_z, frame_interval, jitter, seed)
    t0 = (int(start[:2]) * 3600 + int(start[2:4]) * 60 + float(start[4:]))
    spec = SeriesSpec(pixels=pixels, iop=np.asarray(iop, float), positions=positions,
                      pixel_spacing=tuple(pixel_spacing), times=times, slope=slope,
                      intercept=intercept, series_uid=series_uid)
    omit = {tuple(x) for x in omit}
    jobs = [(t, z) for t in range(n_t) for z in range(n_z) if (t, z) not in omit]
    jobs += [tuple(x) for x in duplicate]
    order = rng.permutation(len(jobs))
    for k in order:
        t, z = jobs[k]
        ds = _base(MRImageStorage, series_uid, study_uid, frame_uid,
                   series_number=series_number, description=description, protocol=protocol,
                   te_ms=te_ms, tr_ms=tr_ms, flip=flip, field_t=field_t, rows=rows, cols=cols,
                   dtype=pixels.dtype)
        uid = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.SOPInstanceUID = uid
        ds.InstanceNumber = t * n_z + z + 1
        ds.AcquisitionNumber = 1
        ds.ImagePositionPatient = [_ds_str(v) for v in positions[z]]
        ds.ImageOrientationPatient = [_ds_str(v) for v in iop]
        ds.PixelSpacing = [_ds_str(v) for v in pixel_spacing]
        ds.SliceThickness = _ds_str(slice_spacing)
        ds.SpacingBetweenSlices = _ds_str(slice_spacing)
        ds.SliceLocation = _ds_str(float(positions[z] @ np.cross(spec.iop[:3], spec.iop[3:])))
        acq = _tm(t0 + times[t, z])
        if timing in ("acquisition", "tpi"):
            ds.AcquisitionTime = ds.ContentTime = acq
        elif timing == "trigger":
            ds.AcquisitionTime = ds.ContentTime = _tm(t0)
            ds.TriggerTime = _ds_str(round(times[t, 0] * 1000.0, 3))
        if timing == "tpi":
            ds.TemporalPositionIdentifier = t + 1
            ds.NumberOfTemporalPositions = n_t
        if slope != 1.0 or intercept != 0.0:
            ds.RescaleSlope, ds.RescaleIntercept = _ds_str(slope), _ds_str(intercept)
            ds.RescaleType = "US"
        ds.PixelData = np.ascontiguousarray(pixels[t, z]).astype(
            pixels.dtype.newbyteorder("<")).tobytes()
        sub = directory / (f"s{rng.integers(2)}" if subfolders else "")
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / uuid.uuid4().hex
        ds.save_as(path, enforce_file_format=True)
        spec.files.append(path)
    return spec


def _item(**kwargs) -> Dataset:
    item = Dataset()
    for key, value in kwargs.items():
        setattr(item, key, value)
    return item


def write_enhanced_series(path, pixels, *, iop=AXIAL, origin=(-110.0, -95.0, -20.0),
                          pixel_spacing=(1.8, 1.6), slice_spacing=5.0, descending=False,
                          frame_interval=1.5, start="095959.5", slope=1.0, intercept=0.0,
                          series_number=7, description="ep2d_perf_enh",
                          protocol="ep2d_perf_p2", te_ms=30.0, tr_ms=None, flip=90.0,
                          field_t=3.0, shuffle_frames=True, seed=0) -> SeriesSpec:
    """Write one Enhanced MR Image Storage file holding every slice and time point.

    Geometry goes in the shared PlaneOrientationSequence/PixelMeasuresSequence and the
    per-frame PlanePositionSequence; timing in the per-frame FrameContentSequence
    (TemporalPositionIndex, FrameAcquisitionDateTime); rescaling in a per-frame
    PixelValueTransformationSequence (PS3.3 C.8.13, C.7.6.16).
    """
    path = Path(path)
    pixels = np.asarray(pixels)
    n_t, n_z, rows, cols = pixels.shape
    tr_ms = frame_interval * 1000.0 if tr_ms is None else tr_ms
    rng = np.random.default_rng(seed)
    series_uid = generate_uid()
    positions = _positions(origin, iop, n_z, slice_spacing, descending)
    times = _times(n_t, n_z, frame_interval, 0.0, seed)
    t0 = (int(start[:2]) * 3600 + int(start[2:4]) * 60 + float(start[4:]))
    day = _dt.datetime(2024, 1, 2)
    ds = _base(EnhancedMRImageStorage, series_uid, generate_uid(), generate_uid(),
               series_number=series_number, description=description, protocol=protocol,
               te_ms=te_ms, tr_ms=tr_ms, flip=flip, field_t=field_t, rows=rows, cols=cols,
               dtype=pixels.dtype)
    uid = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.SOPInstanceUID = uid
    ds.ImageType = ["ORIGINAL", "PRIMARY", "PERFUSION", "NONE"]
    ds.InstanceNumber = 1
    ds.AcquisitionDateTime = "20240102" + _tm(t0)
    ds.ContentTime = _tm(t0)
    ds.NumberOfFrames = n_t * n_z
    ds.DimensionOrganizationUID = generate_uid()
    ds.DimensionIndexSequence = DicomSequence([
        _item(DimensionIndexPointer=0x00209057, FunctionalGroupPointer=0x00209111),
        _item(DimensionIndexPointer=0x00209128, FunctionalGroupPointer=0x00209111)])
    ds.SharedFunctionalGroupsSequence = DicomSequence([_item(
        PlaneOrientationSequence=DicomSequence([_item(
            ImageOrientationPatient=[_ds_str(v) for v in iop])]),
        PixelMeasuresSequence=DicomSequence([_item(
            PixelSpacing=[_ds_str(v) for v in pixel_spacing],
            SliceThickness=_ds_str(slice_spacing),
            SpacingBetweenSlices=_ds_str(slice_spacing))]),
        MRTimingAndRelatedParametersSequence=DicomSequence([_item(
            RepetitionTime=_ds_str(tr_ms), FlipAngle=_ds_str(flip), EchoTrainLength=1)]),
        MREchoSequence=DicomSequence([_item(EffectiveEchoTime=float(te_ms))]),
    )])
    order = [(t, z) for t in range(n_t) for z in range(n_z)]
    if shuffle_frames:
        order = [order[i] for i in rng.permutation(len(order))]
    frames = []
    for t, z in order:
        when = day + _dt.timedelta(seconds=t0 + times[t, z])
        frames.append(_item(
            FrameContentSequence=DicomSequence([_item(
                StackID="1", InStackPositionNumber=z + 1, TemporalPositionIndex=t + 1,
                DimensionIndexValues=[z + 1, t + 1],
                FrameAcquisitionDateTime=when.strftime("%Y%m%d%H%M%S.%f"),
                FrameReferenceDateTime=when.strftime("%Y%m%d%H%M%S.%f"))]),
            PlanePositionSequence=DicomSequence([_item(
                ImagePositionPatient=[_ds_str(v) for v in positions[z]])]),
            PixelValueTransformationSequence=DicomSequence([_item(
                RescaleSlope=_ds_str(slope), RescaleIntercept=_ds_str(intercept),
                RescaleType="US")]),
        ))
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(frames)
    stack = np.stack([pixels[t, z] for t, z in order])
    ds.PixelData = np.ascontiguousarray(stack).astype(pixels.dtype.newbyteorder("<")).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return SeriesSpec(pixels=pixels, iop=np.asarray(iop, float), positions=positions,
                      pixel_spacing=tuple(pixel_spacing), times=times, slope=slope,
                      intercept=intercept, series_uid=series_uid, files=[path])


def write_junk(directory) -> list:
    """Non-DICOM files a real export folder holds: text, random bytes, an empty file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    files = {
        "README.txt": b"exported by a PACS\n",
        "notes.dcm": b"not really DICOM",
        "random.bin": rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "empty": b"",
        ".DS_Store": b"\x00\x00\x00\x01Bud1" + bytes(200),
    }
    out = []
    for name, content in files.items():
        p = directory / name
        p.write_bytes(content)
        out.append(p)
    return out


def labelled_pixels(n_t, n_z, rows, cols, dtype=np.uint16, seed=0) -> np.ndarray:
    """Pixels that name their source: ``value = base + 7 t`` with
    ``base = 1 + z*rows*cols + row*cols + col`` unique per spatial position, so every
    voxel and time point of a reader's output can be traced back to its DICOM pixel."""
    base = 1 + np.arange(n_z * rows * cols).reshape(n_z, rows, cols)
    vals = base[None] * 1 + 7 * np.arange(n_t)[:, None, None, None]
    if vals.max() >= np.iinfo(dtype).max:
        raise ValueError("series too large for unique labels in this dtype")
    return vals.astype(dtype)


__all__ = ["AXIAL", "SAGITTAL", "CORONAL", "oblique_iop", "SeriesSpec", "write_classic_series",
           "write_enhanced_series", "write_junk", "labelled_pixels"]

