"""Network failures in words an operator can act on: which endpoint, which step, what to try.

The transport says what failed (a TransportError code) and at which step of the call:
    resolve  the endpoint's host name to addresses (DNS)
    connect  the TCP handshake
    proxy    the proxy's CONNECT tunnel to the endpoint (https through a proxy)
    tls      the TLS handshake (certificate, protocol)
    answer   waiting for, or reading, the server's HTTP answer
    queue    waiting for one of the connections this process may have open to the endpoint at once
`describe` turns that into one sentence naming the endpoint, e.g.
    "connect to cn-hangzhou.log.aliyuncs.com:443: connection refused; nothing listens there:
     check the endpoint's host and port"
Pure: no sockets here, only the words.
"""

from __future__ import annotations

from typing import Literal

Step = Literal["resolve", "connect", "proxy", "tls", "answer", "queue"]

_VERB: dict[str, str] = {
    "resolve": "resolve",
    "connect": "connect to",
    "proxy": "tunnel (proxy CONNECT) to",
    "tls": "TLS handshake with",
    "answer": "answer from",
    "queue": "wait for a connection to",
}

# (code, step) -> what to try; (code, None) applies at any step.
_FIX: dict[tuple[str, str | None], str] = {
    ("NameResolution", None): "check the endpoint's spelling and this host's DNS (/etc/resolv.conf)",
    ("ConnectionRefused", None): "nothing listens there: check the endpoint's host and port",
    ("Timeout", "resolve"): "the DNS server did not answer in time: check this host's DNS (/etc/resolv.conf)",
    ("Timeout", "connect"): (
        "no reply to the TCP handshake: a firewall may drop the traffic, or the endpoint is not reachable "
        "from this network (an -intranet endpoint works only inside the cloud region)"
    ),
    ("Timeout", "proxy"): (
        "the proxy took the connection but did not open the tunnel in time: check the proxy "
        "(its logs, whether it allows this host and port)"
    ),
    ("Timeout", "tls"): "the TLS handshake stalled: a proxy or firewall may be in the way",
    ("Timeout", "queue"): (
        "earlier calls hold every connection (or connection set-up) this process may have at once, "
        "and were not answered yet: a server, proxy or DNS server in the way is slow or holds requests"
    ),
    ("Timeout", "answer"): (
        "the server accepted the connection but did not answer within the call's deadline: it may be "
        "overloaded, or a proxy or load balancer in between holds the request"
    ),
    ("TLSError", None): (
        "check the system's CA certificates and clock, and that the endpoint speaks HTTPS "
        "(write http:// for a plain-HTTP endpoint)"
    ),
    ("ConnectionReset", None): "a proxy, load balancer or the service dropped the connection; it is retried",
    ("InvalidHTTP", None): "what answered is not the log service (a proxy or a wrong port?)",
    ("ResponseTooLarge", None): "what answered is not the log service (a proxy or a wrong port?)",
    ("NetworkError", "connect"): "check this host's network and routes to the endpoint",
}


def fix_for(code: str, step: str | None) -> str | None:
    return _FIX.get((code, step)) or _FIX.get((code, None))


# Through a proxy, the name resolved and the TCP handshake made are the proxy's: what to check is it.
_PROXY_FIX: dict[str, str] = {
    "NameResolution": "check the proxy's host name (config proxy or *_PROXY) and this host's DNS",
    "ConnectionRefused": "nothing listens there: check the proxy's host and port (config proxy or *_PROXY)",
    "Timeout": "no reply from the proxy in time: check that it runs and that this host may reach it",
}


def describe(code: str, detail: str, step: str | None, where: str, proxy: str | None = None) -> str:
    """One line: `<step> <endpoint>: <detail>; <fix>`. `where` is host:port (or a URL); `proxy`, the
    proxy's host:port when the call goes through one: a failed resolve or connect was then the proxy's."""
    if proxy is not None and step in ("resolve", "connect"):
        target = proxy.rsplit(":", 1)[0] if step == "resolve" else proxy
        head = f"{_VERB[step]} proxy {target} (for {where})"
        fix = _PROXY_FIX.get(code) or fix_for(code, step)
        return f"{head}: {detail}" + (f"; {fix}" if fix else "")
    target = where.split(":")[0] if step == "resolve" else where
    head = f"{_VERB.get(step or '', 'call to')} {target}"
    fix = fix_for(code, step)
    return f"{head}: {detail}" + (f"; {fix}" if fix else "")
