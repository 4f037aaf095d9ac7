"""What went wrong on a connection to a mail server, in words staff can act on (the SMTP and the IMAP side
say the same thing the same way)."""

from __future__ import annotations

import socket
import ssl


def why(exc: BaseException, tls_setting: str) -> str:
    """The reason a connection failed or broke; `tls_setting` names the rules.yaml key to check when the
    encrypted connection is what failed."""
    if isinstance(exc, ConnectionRefusedError):
        return "连接被拒绝(服务器未开启或端口不对)"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "连接超时(服务器没有应答)"
    if isinstance(exc, socket.gaierror):
        return "找不到该服务器(域名解析失败)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"服务器证书校验失败({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"加密连接失败({getattr(exc, 'reason', None) or exc}),请检查 {tls_setting} 设置"
    if isinstance(exc, ConnectionError):
        return f"连接被对方重置或中断({exc.strerror or exc})"
    return f"{type(exc).__name__}: {exc}"
