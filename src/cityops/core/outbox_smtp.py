"""The outbox's `smtp` channel: transmit a ready-made e-mail to an SMTP server.

The message is built when it is queued (a complete RFC 5322 message in the payload, the
recipient address in `target`), so what is sent is exactly what was committed; this sender only
transmits it. The password stays in the settings: it is never written to the outbox or shown by
the delivery log.
"""

from __future__ import annotations

import smtplib
import ssl
from email.utils import parseaddr

from cityops.core.config import Settings
from cityops.core.outbox import Delivery, Parcel, Sender

CHANNEL = "smtp"


def smtp_configured(settings: Settings) -> bool:
    """Whether e-mail can be sent (an SMTP host is set)."""
    return bool(settings.smtp_host)


def envelope_sender(settings: Settings) -> str:
    """The bare address of CITYOPS_SMTP_FROM (the envelope's MAIL FROM)."""
    return parseaddr(settings.smtp_from)[1] or settings.smtp_from


def _reply_code(exc: smtplib.SMTPException) -> int | None:
    code = getattr(exc, "smtp_code", None)
    if isinstance(exc, smtplib.SMTPRecipientsRefused) and exc.recipients:
        code = next(iter(exc.recipients.values()))[0]
    return int(code) if isinstance(code, int) else None


def smtp_sender(settings: Settings) -> Sender:
    """A sender transmitting each parcel's message to its `target` address over SMTP.

    A 5xx refusal of the recipient or the message is final; anything else (4xx, a refused login,
    connection or timeout) is retried with the outbox's backoff.
    """
    mail_from = envelope_sender(settings)

    def connect() -> smtplib.SMTP:
        host, port, timeout = settings.smtp_host, settings.smtp_port, settings.smtp_timeout
        if settings.smtp_security == "tls":
            return smtplib.SMTP_SSL(
                host, port, timeout=timeout, context=ssl.create_default_context()
            )
        conn = smtplib.SMTP(host, port, timeout=timeout)
        try:
            if settings.smtp_security == "starttls":
                conn.starttls(context=ssl.create_default_context())
        except BaseException:
            conn.close()
            raise
        return conn

    def send(parcel: Parcel) -> Delivery:
        try:
            # One connection per message: notifications come in small bursts, and no idle
            # connection is left open between delivery rounds for the server to drop.
            with connect() as conn:
                if settings.smtp_username:
                    conn.login(settings.smtp_username, settings.smtp_password)
                conn.sendmail(mail_from, [parcel.target], parcel.payload)
        except smtplib.SMTPException as exc:
            code = _reply_code(exc)
            # Only a refusal of this recipient or this message is final; a refused login or
            # sender is the server's configuration, which an administrator can fix.
            final = (
                isinstance(exc, smtplib.SMTPRecipientsRefused | smtplib.SMTPDataError)
                and code is not None
                and 500 <= code < 600
            )
            return Delivery(
                ok=False, status=code, error=f"{type(exc).__name__}: {exc}"[:500], retry=not final
            )
        except OSError as exc:  # refused, unreachable, timed out, TLS failure
            return Delivery(ok=False, error=f"{type(exc).__name__}: {exc}"[:500])
        return Delivery(ok=True, status=250)

    return send
