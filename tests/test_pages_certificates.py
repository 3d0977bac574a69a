"""证书 on the pages: a volunteer asks for a certificate of a period (once a day per period:
a repeated request gets the same one), downloads the PDF with its verification code and
QR; anyone checks it on the public verify page (masked name, issuer, hours, period, date),
which says so once it is revoked; another volunteer's certificate is a 404."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest
import requests
from sqlalchemy import func, select

from rules import certificates
from store.models import ServiceCertificate
from tests.console_support import one
from tests.pages_support import csrf, open_as
from tests.seeds import apply


def font_installed() -> bool:
    try:
        certificates.find_font()
        return True
    except certificates.FontMissing:
        return False


def test_request_verify_and_revoke(m, emulator, svc):
    apply(svc, ["console_world"])
    http, _ = open_as(emulator, m, "o_DF_vol")
    page = http.get(m + "/m/certificates", timeout=10)
    token = csrf(page.text)
    issued = http.post(m + "/m/certificates", data={"csrf_token": token, "period": "all"}, timeout=10)
    assert issued.status_code == 200 and "7.5小时" in issued.text and "验证码" in issued.text
    again = http.post(m + "/m/certificates", data={"csrf_token": token, "period": "all"}, timeout=10)
    assert again.url == issued.url  # the same certificate, not a second one
    assert one(svc, select(func.count()).select_from(ServiceCertificate)) == 1
    bad = http.post(m + "/m/certificates", data={"csrf_token": token, "period": "custom", "start": "2026-05-01",
                                                 "end": "2026-01-01"}, timeout=10)
    assert bad.status_code == 400 and "起止日期" in bad.text
    code = one(svc, select(ServiceCertificate.verify_code))
    assert re.fullmatch(r"[A-Z2-9]{12}", code)
    # Anyone, without signing in, with the code as printed (dashes, lower case).
    printed = certificates.format_code(code).lower()
    checked = requests.get(m + "/m/verify", params={"code": printed}, timeout=10)
    assert checked.status_code == 200 and "真实有效" in checked.text
    assert "D**" in checked.text and "DF甲" not in checked.text and "东风社区小队" in checked.text
    assert "7.5小时" in checked.text
    qr = requests.get(m + f"/m/verify/{code}/qr.png", timeout=10)
    assert qr.headers["Content-Type"] == "image/png"
    assert requests.get(m + "/m/verify/AAAAAAAAAAAA", timeout=10).status_code == 404
    with svc.db.transaction() as s:
        cert = s.scalar(select(ServiceCertificate))
        assert certificates.revoke(s, cert, now=datetime.now(timezone.utc), reason="时长更正")
    revoked = requests.get(m + f"/m/verify/{code}", timeout=10)
    assert "已于" in revoked.text and "撤销" in revoked.text and "时长更正" in revoked.text
    assert "真实有效" not in revoked.text


def test_another_volunteers_certificate_is_404(m, emulator, svc):
    apply(svc, ["console_world"])
    http, _ = open_as(emulator, m, "o_DF_vol")
    token = csrf(http.get(m + "/m/certificates", timeout=10).text)
    http.post(m + "/m/certificates", data={"csrf_token": token, "period": "this_year"}, timeout=10)
    cert_id = one(svc, select(ServiceCertificate.id))
    other, _ = open_as(emulator, m, "o_BS_vol")
    assert other.get(m + f"/m/certificates/{cert_id}", timeout=10).status_code == 404
    assert other.get(m + f"/m/certificates/{cert_id}.pdf", timeout=10).status_code == 404
    listing = other.get(m + "/m/certificates", timeout=10)
    assert "KWZM" not in listing.text


@pytest.mark.skipif(not font_installed(), reason="no CJK font (apt-get install fonts-wqy-microhei)")
def test_pdf_carries_the_verification_code(m, emulator, svc):
    apply(svc, ["console_world"])
    http, _ = open_as(emulator, m, "o_DF_vol")
    token = csrf(http.get(m + "/m/certificates", timeout=10).text)
    http.post(m + "/m/certificates", data={"csrf_token": token, "period": "all"}, timeout=10)
    cert_id = one(svc, select(ServiceCertificate.id))
    pdf = http.get(m + f"/m/certificates/{cert_id}.pdf", timeout=30)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert b"/Subtype /Image" in pdf.content or b"/Subtype/Image" in pdf.content  # the QR
