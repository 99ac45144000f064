"""Fixtures of test_combined.py: TLS and SASL together on one broker, and the extra certificates the
refusal tests need (an expired client certificate, a second CA nobody trusts and a client
certificate from it), all made with the openssl CLI in a temporary directory.

The broker is tls_support.Broker: its internal listener is SASL_SSL, its external listener SSL
with `ssl.client.auth=requested` (a client may present a certificate; one that does not verify is
refused).
"""
import os

import pytest

import tls_support

USERS = {"admin": "admin-secret", "alice": "alice-secret", "bob": "bob-secret"}


class RefusalPKI(tls_support.PKI):
    """tls_support.PKI plus expired.pem (signed by the trusted CA, valid only in 2020) and
    rogue-ca.pem with rogue-client.pem (a client certificate the broker does not trust)."""

    def __init__(self, directory: str):
        super().__init__(directory)
        self.run("""
            mkdir -p ca-db && : > ca-db/index.txt && echo 3001 > ca-db/serial
            printf '[ca]\\ndefault_ca=test\\n[test]\\ndatabase=ca-db/index.txt\\nserial=ca-db/serial\\nnew_certs_dir=ca-db\\ncertificate=ca.pem\\nprivate_key=ca.key\\ndefault_md=sha256\\npolicy=any\\nunique_subject=no\\n[any]\\ncommonName=supplied\\norganizationName=optional\\n' > ca.cnf
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout expired.key -out expired.csr -subj '/O=acme/CN=old'
            openssl ca -batch -notext -config ca.cnf -startdate 20200101000000Z -enddate 20200102000000Z -extfile client.ext -in expired.csr -out expired.pem
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout rogue-ca.key -out rogue-ca.pem -days 2 -subj '/CN=Rogue CA'
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout rogue-client.key -out rogue-client.csr -subj '/O=acme/CN=alice'
            openssl x509 -req -in rogue-client.csr -CA rogue-ca.pem -CAkey rogue-ca.key -set_serial 4001 -days 2 -extfile client.ext -out rogue-client.pem
            """)


@pytest.fixture(scope="module")
def refusal_pki(tmp_path_factory):
    tls_support.require_module("confluent_kafka")
    return RefusalPKI(str(tmp_path_factory.mktemp("pki-combined")))


def combined_settings(pki: tls_support.PKI, users_file: str, **extra: str) -> dict[str, str]:
    """Internal listener SASL_SSL (admin is the brokers' own user), TLS settings of tls_support."""
    return {**tls_support.tls_settings(pki, "requested"), "security.protocol": "SASL_SSL", "sasl.users.file": users_file,
            "inter.broker.user": "admin", "connection.failed.authentication.delay.ms": "50", **extra}


def write_users(directory: str) -> str:
    path = os.path.join(directory, "users")
    with open(path, "w") as f:
        f.write("".join(f"{u}:{p}\n" for u, p in USERS.items()))
    return path


class Endpoints:
    """A running combined broker and the client settings for each way in."""

    def __init__(self, broker: tls_support.Broker, external: str, pki: tls_support.PKI):
        self.broker = broker
        self.sasl_ssl = broker.bootstrap
        self.ssl = external
        self.pki = pki

    def sasl(self, mechanism: str, user: str, password: str | None = None) -> dict:
        return {"bootstrap.servers": self.sasl_ssl, "security.protocol": "SASL_SSL", "ssl.ca.location": self.pki.path("ca.pem"),
                "sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": USERS[user] if password is None else password}

    def tls(self, cert: str | None = None, ca: str = "ca.pem") -> dict:
        config = {"bootstrap.servers": self.ssl, "security.protocol": "SSL", "ssl.ca.location": self.pki.path(ca)}
        if cert:
            config.update({"ssl.certificate.location": self.pki.path(f"{cert}.pem"), "ssl.key.location": self.pki.path(f"{cert}.key")})
        return config


def start_combined(pki: tls_support.PKI, directory: str, **extra: str) -> Endpoints:
    """With `ssl.client.auth=required` in `extra`, every client (SASL ones too) needs client.pem."""
    external = f"127.0.0.1:{tls_support.free_port()}"
    settings = combined_settings(pki, write_users(directory), **{"external.listen": external, "external.security.protocol": "SSL", **extra})
    probe_cert = (pki.path("client.pem"), pki.path("client.key")) if settings["ssl.client.auth"] == "required" else None
    broker = tls_support.Broker(directory, settings, ca=pki.path("ca.pem"), client_cert=probe_cert)
    broker.start()
    return Endpoints(broker, external, pki)


@pytest.fixture(scope="module")
def combined(refusal_pki, tmp_path_factory):
    endpoints = start_combined(refusal_pki, str(tmp_path_factory.mktemp("combined")))
    yield endpoints
    endpoints.broker.stop()
    with open(endpoints.broker.log_path, errors="replace") as f:
        log = f.read()
    for password in USERS.values():
        assert password not in log, "a password appeared in the broker log"
