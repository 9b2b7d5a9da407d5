"""QrRenderer on segno: the QR is drawn locally, so the TOTP secret never leaves the server."""

import io

import segno


class SegnoQrRenderer:
    def __init__(self, *, scale: int = 4, border: int = 4) -> None:
        self._scale = scale
        # 4 modules of quiet zone is the minimum the QR standard asks for; scanners struggle with less.
        self._border = border

    def svg(self, data: str) -> str:
        # make_qr, not make: segno.make may pick a Micro QR for short data, which authenticator apps
        # can't read.
        qr = segno.make_qr(data, error="m")
        out = io.BytesIO()
        # Explicit white background: a transparent one turns unscannable on a dark-mode page.
        qr.save(
            out,
            kind="svg",
            xmldecl=False,
            svgns=True,
            scale=self._scale,
            border=self._border,
            dark="#000",
            light="#fff",
            nl=False,
        )
        return out.getvalue().decode("utf-8")
