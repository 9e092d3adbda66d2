"""PHAE network: a 1-D fully convolutional encoder and a physics decoder (torch).

Encoder (the PHAE paper, section 2.2.1 and its Fig. 2): the pair (tissue
curve, AIF) as 2 input channels; 4 blocks ``Conv1d(kernel 3, stride 1,
padding 1) -> BatchNorm1d -> LeakyReLU(0.02)`` with 32, 64, 128 and 256
feature maps; global average pooling over time; one ``Linear(256, 1)``. Its
output ``z`` is mapped to a mean transit time in a physical range by a scaled
sigmoid::

    MTT = mtt_min + (mtt_max - mtt_min) * sigmoid(z)      (0.5 to 30 s by default)

Physics decoder (section 2.2.2, Eqs. 2-6): with CBV from the integral ratio
and ``CBF = CBV / MTT`` (central volume theorem), the flow-scaled residue
``k(t) = CBF * R(t)`` uses the Lorentzian residue whose integral is MTT
(Calamante et al. 2003)::

    R(t) = 1 / (1 + (pi t / (2 MTT))^2)

(``residue="exponential"``, ``exp(-t/MTT)``, is also available) and is
convolved with the AIF (Ostergaard et al. 1996)::

    C_t(t) = integral_0^t C_a(tau) k(t - tau) dtau

The convolution is evaluated exactly for an AIF that is linear between its
samples: sample ``i`` of the reconstruction is ``sum_m a_(i-m) w_m`` with
``w_m = (K2((m+1) dt) - 2 K2(m dt) + K2((m-1) dt)) / dt``, where ``K2`` is the
closed-form second antiderivative of ``k`` (``K2(s) = 0`` for ``s <= 0``),
computed with FFTs. Everything is differentiable, so the mean absolute error
of the reconstruction trains the encoder (section 2.2.3).

Bolus delay (Tmax): the training loss is the paper's, the reconstruction
error without delay. The Lorentzian peaks at ``t = 0``, so the decoded residue
alone carries no timing; after encoding, the decoder tries every candidate
delay ``d`` of a grid (``delay_min..delay_max`` in steps of ``delay_step``) by
shifting the reconstruction, ``C_t(t - d)``, with the encoded MTT fixed, and
the delay with the smallest error is the reported Tmax (``k(t - d)`` peaks at
``t = d``). The delay is not searched during training: a free shift lets a
Lorentzian mimic the flat top of gamma or linear residues with a much shorter
MTT (tested: a gamma residue of MTT 3 s was fitted as 0.7 s plus a 1 s delay).

References
----------
PHAE paper: "Physics-informed autoencoder for DSC-MRI perfusion
    post-processing: application to glioma grading" (shared/seeds/002_*.txt).
Calamante F, Gadian DG, Connelly A. Quantification of bolus-tracking MRI:
    improved characterization of the tissue residue function using Tikhonov
    regularization. MRM 2003;50:1237-1247 (Lorentzian residue).
Ostergaard L et al. High resolution measurement of cerebral blood flow using
    intravascular tracer bolus passages. Part I. MRM 1996;36:715-725.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import DEFAULT_CONFIG, check_config

#: MTT (s) the untrained encoder outputs (bias of the last layer).
INITIAL_MTT = 4.0


class Encoder(nn.Module):
    """1-D fully convolutional encoder: (tissue, AIF) -> MTT in seconds.

    Parameters
    ----------
    config : dict
        Model configuration (:data:`perfmap.neural.config.DEFAULT_CONFIG`):
        ``in_channels``, ``widths``, ``kernel_size``, ``negative_slope``,
        ``mtt_min`` and ``mtt_max``.

    Examples
    --------
    >>> import torch
    >>> enc = Encoder().eval()
    >>> enc(torch.zeros(5, 2, 64)).shape
    torch.Size([5])
    """

    def __init__(self, config=None):
        super().__init__()
        cfg = check_config(config or DEFAULT_CONFIG)
        k = int(cfg["kernel_size"])
        layers = []
        c_in = int(cfg["in_channels"])
        for width in cfg["widths"]:
            layers += [nn.Conv1d(c_in, int(width), k, stride=1, padding=k // 2),
                       nn.BatchNorm1d(int(width)),
                       nn.LeakyReLU(float(cfg["negative_slope"]))]
            c_in = int(width)
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, 1)
        self.mtt_min = float(cfg["mtt_min"])
        self.mtt_max = float(cfg["mtt_max"])
        # Start at MTT = 4 s (a typical tissue value) rather than mid-range (15 s).
        p0 = (INITIAL_MTT - self.mtt_min) / (self.mtt_max - self.mtt_min)
        with torch.no_grad():
            self.head.bias.fill_(math.log(p0 / (1.0 - p0)))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-activation output ``z``, shape (B,)."""
        h = self.features(x).mean(dim=-1)          # global average pooling
        return self.head(h).squeeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """MTT in seconds, shape (B,), from inputs of shape (B, 2, L)."""
        return self.mtt_min + (self.mtt_max - self.mtt_min) * torch.sigmoid(self.logits(x))


def _second_antiderivative(s: torch.Tensor, mtt: torch.Tensor, residue: str) -> torch.Tensor:
    """``K2(s) = int_0^s int_0^u R(v) dv du`` for ``R(0) = 1``, ``int R = MTT``; 0 for s <= 0."""
    s = torch.clamp(s, min=0.0)
    if residue == "lorentzian":
        a = 2.0 * mtt / math.pi
        q = s / a
        return a * (s * torch.atan(q) - 0.5 * a * torch.log1p(q * q))
    if residue == "exponential":
        return mtt * (s - mtt * (-torch.expm1(-s / mtt)))
    raise ValueError(f"unknown decoder residue {residue!r}")


def residue(t: torch.Tensor, mtt: torch.Tensor, residue: str = "lorentzian") -> torch.Tensor:
    """Residue ``R(t)`` (R(0) = 1, integral MTT) for times ``t`` (L,) and MTTs (B,) -> (B, L)."""
    m = mtt[:, None]
    if residue == "lorentzian":
        return 1.0 / (1.0 + (math.pi * t[None, :] / (2.0 * m)) ** 2)
    if residue == "exponential":
        return torch.exp(-t[None, :] / m)
    raise ValueError(f"unknown decoder residue {residue!r}")


def convolution_weights(mtt: torch.Tensor, dt: float, n: int,
                        residue: str = "lorentzian") -> torch.Tensor:
    """Weights ``w_m`` (B, n) of the exact convolution of a piecewise-linear AIF with ``R``.

    Computed in float64 (the second difference of ``K2`` cancels digits) and
    returned in the dtype of ``mtt``.
    """
    m64 = mtt.to(torch.float64)[:, None]
    s = torch.arange(-1, n + 1, dtype=torch.float64, device=mtt.device)[None, :] * dt
    k2 = _second_antiderivative(s, m64, residue)
    w = (k2[:, 2:] - 2.0 * k2[:, 1:-1] + k2[:, :-2]) / dt
    return w.to(mtt.dtype)


def causal_convolve(aif: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``out_i = sum_(m <= i) aif_(i-m) w_m`` along the last axis, via a zero-padded FFT."""
    n = aif.shape[-1]
    size = 1 << int(math.ceil(math.log2(2 * n)))
    spec = torch.fft.rfft(aif, size) * torch.fft.rfft(w, size)
    return torch.fft.irfft(spec, size)[..., :n]


class PhysicsDecoder(nn.Module):
    """Reconstruct tissue curves from MTT, the AIF and the integral ratio (no weights).

    Parameters
    ----------
    config : dict
        ``dt`` (s), ``residue``, ``delay_min``, ``delay_max``, ``delay_step`` (s).
    """

    def __init__(self, config=None):
        super().__init__()
        cfg = check_config(config or DEFAULT_CONFIG)
        self.dt = float(cfg["dt"])
        self.residue = str(cfg["residue"])
        lo, hi, step = (float(cfg[k]) for k in ("delay_min", "delay_max", "delay_step"))
        n_delays = int(round((hi - lo) / step)) + 1
        self.register_buffer("delays", lo + step * torch.arange(n_delays, dtype=torch.float32),
                             persistent=False)

    @staticmethod
    def cbv(tissue: torch.Tensor, aif: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Integral ratio ``int C_t / int C_a`` over the valid frames (paper Eq. 2), (B,)."""
        return torch.trapezoid(tissue * valid, dim=-1) / torch.trapezoid(aif * valid, dim=-1)

    def forward(self, mtt: torch.Tensor, tissue: torch.Tensor, aif: torch.Tensor,
                valid: torch.Tensor) -> torch.Tensor:
        """Reconstructed tissue curves without delay, (B, L).

        ``CBF = CBV / MTT`` (Eq. 3), ``k = CBF R`` (Eqs. 4-5), ``C_t = C_a (x) k`` (Eq. 6).
        """
        cbf = self.cbv(tissue, aif, valid) / mtt
        w = convolution_weights(mtt, self.dt, tissue.shape[-1], self.residue)
        return cbf[:, None] * causal_convolve(aif, w)

    def shift_matrix(self, n: int, device=None, dtype=torch.float32) -> torch.Tensor:
        """Matrix ``S`` (n, D * n) with ``recon @ S`` = ``recon(t - d)`` for every delay ``d``.

        Column block ``d`` shifts a curve of ``n`` samples later by ``delays[d]``
        with linear interpolation between samples, zero before the first sample
        (no tracer yet) and the last value after the end. The shift is linear
        in the curve, so ``S`` is the shift applied to the identity; one matrix
        product then replaces a gather per delay (3x faster in inference).
        """
        key = (n, str(device), dtype)
        cached = getattr(self, "_shift_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        delays = self.delays.to(device=device, dtype=torch.float64)
        pos = torch.arange(n, device=device, dtype=torch.float64)[None, :] \
            - (delays / self.dt)[:, None]                                  # (D, n)
        i0 = torch.floor(pos)
        f = pos - i0
        front = int(math.ceil(max(0.0, float(delays.max()) / self.dt))) + 2
        back = int(math.ceil(max(0.0, -float(delays.min()) / self.dt))) + 2
        eye = torch.eye(n, device=device, dtype=torch.float64)
        padded = torch.cat([eye.new_zeros(n, front), eye, eye[:, -1:].expand(-1, back)], dim=-1)
        j0 = (i0.long() + front).clamp(0, padded.shape[-1] - 2)
        shift = padded[:, j0] * (1.0 - f) + padded[:, j0 + 1] * f           # (n, D, n)
        matrix = shift.reshape(n, -1).to(dtype)
        self._shift_cache = (key, matrix)
        return matrix

    def shifted(self, recon: torch.Tensor) -> torch.Tensor:
        """``recon(t - d)`` for every candidate delay ``d``: (B, L) -> (B, D, L).

        See :meth:`shift_matrix` for the interpolation and the edges.
        """
        n = recon.shape[-1]
        matrix = self.shift_matrix(n, recon.device, recon.dtype)
        return (recon @ matrix).reshape(recon.shape[0], -1, n)

    def delay_errors(self, recon, tissue, valid) -> torch.Tensor:
        """Mean absolute error over the valid frames for every candidate delay, (B, D).

        Only used to pick a delay (argmin), so no gradient flows through it;
        the work is done in place and the masked sum is a batched product
        (2.6x faster than broadcasting).
        """
        with torch.no_grad():
            diff = self.shifted(recon.detach())
            diff.sub_(tissue.detach()[:, None, :]).abs_()
            valid = valid.detach().to(diff.dtype)
            err = torch.bmm(diff, valid[:, :, None]).squeeze(-1)
            return err / valid.sum(-1).clamp(min=1.0)[:, None]


class PHAE(nn.Module):
    """Encoder + physics decoder; ``forward`` returns MTT, per-curve loss and (optionally) delay.

    Inputs ``x`` (B, 2, L): channel 0 the normalised tissue curve, channel 1
    the normalised AIF (:func:`perfmap.neural.data.to_model_grid`); ``valid``
    (B, L) marks the frames inside the acquisition.
    """

    def __init__(self, config=None):
        super().__init__()
        self.config = check_config(config or DEFAULT_CONFIG)
        self.encoder = Encoder(self.config)
        self.decoder = PhysicsDecoder(self.config)

    def forward(self, x: torch.Tensor, valid: torch.Tensor, with_delay: bool = False):
        """Returns ``(mtt (B,), loss (B,), delay (B,) or None)``.

        The loss is the mean absolute error between the input tissue curve and
        its reconstruction without delay (the paper's decoder). With
        ``with_delay`` the best candidate delay (Tmax) is also searched, with
        the MTT fixed.
        """
        mtt = self.encoder(x)
        tissue, aif = x[:, 0], x[:, 1]
        recon = self.decoder(mtt, tissue, aif, valid)
        err = (recon - tissue).abs() * valid
        loss = err.sum(-1) / valid.sum(-1).clamp(min=1.0)
        delay = None
        if with_delay:
            best = self.decoder.delay_errors(recon.detach(), tissue, valid).argmin(dim=-1)
            delay = self.decoder.delays[best]
        return mtt, loss, delay
