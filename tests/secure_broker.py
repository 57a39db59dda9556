"""A real broker with secured listeners for the security tests, and its own PKI.

`Pki` makes a CA, a broker certificate for 127.0.0.1/localhost, a client certificate (its key
encrypted) and a second, untrusted CA, with the `cryptography` package. `SecureBroker` starts
`weir.service.local.LocalKafka` with two more listeners: SSL (TLS with client certificates
required) and SASL_SSL (SCRAM-SHA-512 over TLS, the user created when the storage is
formatted, by Kafka's own storage tool). Everything binds 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.conftest import KafkaHelper
from weir.service.local import LocalKafka
from weir.service.local.kafka import BrokerExtras

SCRAM_USER = "weir-test"
_SCRAM_JAAS = "org.apache.kafka.common.security.scram.ScramLoginModule required;"


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _cert(
    subject: str,
    key: rsa.RSAPrivateKey,
    issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    """A certificate for `key`, signed by `issuer` (self-signed when None)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        usage = x509.KeyUsage(True, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(usage, critical=True)
    else:
        eku = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
    if server:
        san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


@dataclass
class Pki:
    """PEM files of the test PKI in one folder."""

    ca: Path
    """The CA that signed the broker's and the client's certificates."""
    rogue_ca: Path
    """A CA nobody uses: a client trusting only it must refuse the broker."""
    client_cert: Path
    client_key: Path
    """The client's private key, encrypted with `client_key_password`."""
    client_key_password: str
    broker_chain: bytes
    """The broker's certificate and the CA's, PEM."""
    broker_key: bytes
    """The broker's private key, unencrypted PKCS#8 PEM (as Kafka's PEM key store wants)."""

    @classmethod
    def make(cls, folder: Path) -> Pki:
        folder.mkdir(parents=True, exist_ok=True)
        ca_key, rogue_key, broker_key, client_key = _key(), _key(), _key(), _key()
        ca = _cert("weir test CA", ca_key, None, ca=True)
        rogue = _cert("weir untrusted CA", rogue_key, None, ca=True)
        broker = _cert("127.0.0.1", broker_key, (ca, ca_key), server=True)
        client = _cert("weir-client", client_key, (ca, ca_key))
        password = f"key-{uuid.uuid4().hex[:12]}"
        paths = {
            "ca.pem": _pem(ca),
            "rogue-ca.pem": _pem(rogue),
            "client.pem": _pem(client),
            "client.key": client_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(password.encode()),
            ),
        }
        for name, data in paths.items():
            (folder / name).write_bytes(data)
        return cls(
            ca=folder / "ca.pem",
            rogue_ca=folder / "rogue-ca.pem",
            client_cert=folder / "client.pem",
            client_key=folder / "client.key",
            client_key_password=password,
            broker_chain=_pem(broker) + _pem(ca),
            broker_key=broker_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )


def _prop(pem: bytes) -> str:
    """PEM text as one server.properties value (Java properties read `\\n` as a newline)."""
    return pem.decode().strip().replace("\n", "\\n")


class SecureBroker:
    """LocalKafka with an SSL listener (client certificates required) and a SASL_SSL listener
    (SCRAM-SHA-512, user `SCRAM_USER` with `password`).

    Contract: `up` returns once the broker answers; `down` stops only the broker `up` started
    (by its recorded pid). `env` and `helper` give a worker's environment and a test client
    for either listener, both verifying the broker's certificate against the test CA.
    """

    def __init__(self, root: Path, password: str) -> None:
        self.pki = Pki.make(root / "pki")
        self.password = password
        extras = BrokerExtras(
            listeners={"SSL": "SSL", "SASL_SSL": "SASL_SSL"},
            config={
                "ssl.keystore.type": "PEM",
                "ssl.keystore.certificate.chain": _prop(self.pki.broker_chain),
                "ssl.keystore.key": _prop(self.pki.broker_key),
                "ssl.truststore.type": "PEM",
                "ssl.truststore.certificates": _prop(self.pki.ca.read_bytes()),
                "listener.name.ssl.ssl.client.auth": "required",
                "sasl.enabled.mechanisms": "SCRAM-SHA-512",
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": _SCRAM_JAAS,
            },
            format_args=("--add-scram", f"SCRAM-SHA-512=[name={SCRAM_USER},password={password}]"),
        )
        self.kafka = LocalKafka(root / "kafka", extras)

    def up(self) -> None:
        self.kafka.up()

    def down(self) -> None:
        self.kafka.down()

    def address(self, listener: str) -> str:
        """127.0.0.1:<port> of "SSL" or "SASL_SSL"."""
        return self.kafka.listener(listener)

    def env(self, listener: str, *, password: str | None = None) -> dict[str, str]:
        """WEIR_* settings for a worker on `listener` ("SSL" or "SASL_SSL"); `password`
        replaces the SCRAM user's password (to try a wrong one)."""
        env = {
            "WEIR_BOOTSTRAP_SERVERS": self.address(listener),
            "WEIR_SECURITY_PROTOCOL": listener,
            "WEIR_SSL_CAFILE": str(self.pki.ca),
        }
        if listener == "SSL":
            env["WEIR_SSL_CERTFILE"] = str(self.pki.client_cert)
            env["WEIR_SSL_KEYFILE"] = str(self.pki.client_key)
            env["WEIR_SSL_KEY_PASSWORD"] = self.pki.client_key_password
        else:
            env["WEIR_SASL_MECHANISM"] = "SCRAM-SHA-512"
            env["WEIR_SASL_USERNAME"] = SCRAM_USER
            env["WEIR_SASL_PASSWORD"] = self.password if password is None else password
        return env

    def client_options(self, listener: str) -> dict[str, Any]:
        """aiokafka options of a test client on `listener`, built here with the standard
        library (independently of Weir's own connection code)."""
        ctx = ssl.create_default_context(cafile=str(self.pki.ca))
        ctx.load_cert_chain(
            str(self.pki.client_cert), str(self.pki.client_key), self.pki.client_key_password
        )
        opts: dict[str, Any] = {"security_protocol": listener, "ssl_context": ctx}
        if listener == "SASL_SSL":
            opts.update(
                sasl_mechanism="SCRAM-SHA-512",
                sasl_plain_username=SCRAM_USER,
                sasl_plain_password=self.password,
            )
        return opts

    def helper(self, listener: str) -> KafkaHelper:
        """The shared test helper (topics, produce, read_committed reads) on `listener`."""
        return KafkaHelper(self.address(listener), **self.client_options(listener))
