#if canImport(Glibc)
import Glibc
#endif
import CCrypto

/// One TLS session over memory BIOs: the owner of the socket moves bytes, this object only
/// transforms them, so any event loop or I/O thread can drive it without blocking.
///
/// - `feed` the ciphertext read from the socket, then `handshake()` until it returns true, then
///   `readPlaintext` for the application bytes it holds.
/// - `write` plaintext (after the handshake); `takeOutput` the ciphertext to send, which also
///   carries handshake messages, alerts and session tickets: call it after every other call.
///
/// With memory BIOs OpenSSL never wants to write (the output BIO grows); it wants to read when
/// the input holds no complete record, which `handshake` and `readPlaintext` report as "not yet".
/// Output is bounded by what the owner writes: callers encrypt only as much as they are ready to send.
///
/// Not thread-safe: confine it to one thread or one lock.
public final class TLSEngine: @unchecked Sendable {
    // @unchecked Sendable: the owner confines it (an event loop's thread, or a client's output lock).
    private let ssl: OpaquePointer
    private let input: OpaquePointer
    private let output: OpaquePointer
    public private(set) var handshakeDone = false
    /// The peer sent close_notify: no more application data will come.
    public private(set) var peerClosed = false

    /// A session of `context`; for a client, `serverName` is sent as SNI (unless it is an IP
    /// address) and the server's certificate must match it (DNS name or IP address).
    public init(context: TLSContext, serverName: String? = nil) throws(TLSError) {
        ERR_clear_error()
        guard let ssl = SSL_new(context.pointer) else { throw TLSError.fromQueue("SSL_new") }
        guard let input = BIO_new(BIO_s_mem()), let output = BIO_new(BIO_s_mem()) else {
            SSL_free(ssl)
            throw TLSError.fromQueue("BIO_new")
        }
        SSL_set_bio(ssl, input, output)  // the session owns both BIOs now
        self.ssl = ssl
        self.input = input
        self.output = output
        if context.isServer {
            SSL_set_accept_state(ssl)
        } else {
            SSL_set_connect_state(ssl)
            if let serverName, !serverName.isEmpty {
                if Self.isIPAddress(serverName) {
                    guard X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), serverName) == 1 else {
                        throw TLSError.fromQueue("setting the expected server address \(serverName)")
                    }
                } else {
                    guard floe_ssl_set_sni(ssl, serverName) == 1, SSL_set1_host(ssl, serverName) == 1 else {
                        throw TLSError.fromQueue("setting the server name \(serverName)")
                    }
                }
            }
        }
    }

    deinit { SSL_free(ssl) }

    static func isIPAddress(_ text: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, text, &v4) == 1 || inet_pton(AF_INET6, text, &v6) == 1
    }

    /// Ciphertext received from the peer.
    public func feed(_ bytes: UnsafeRawBufferPointer) {
        guard !bytes.isEmpty else { return }
        _ = BIO_write(input, bytes.baseAddress, Int32(bytes.count))  // a memory BIO takes everything
    }

    public func feed(_ bytes: ArraySlice<UInt8>) {
        bytes.withUnsafeBytes { feed($0) }
    }

    /// Advances the handshake with what was fed. True once it is complete; false while it needs
    /// more input from the peer. Throws when the handshake failed (the alert for the peer is in
    /// the output: send it before closing).
    public func handshake() throws(TLSError) -> Bool {
        if handshakeDone { return true }
        ERR_clear_error()
        let rc = SSL_do_handshake(ssl)
        if rc == 1 {
            handshakeDone = true
            return true
        }
        let code = SSL_get_error(ssl, rc)
        if code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE { return false }
        var failure = TLSError.fromQueue("TLS handshake")
        let verify = SSL_get_verify_result(ssl)
        if verify != X509_V_OK {
            failure = TLSError(operation: failure.operation,
                               detail: failure.detail + " (certificate: " + String(cString: X509_verify_cert_error_string(verify)) + ")")
        }
        throw failure
    }

    /// Appends the application bytes decrypted from what was fed to `plaintext`; stops when a
    /// record is incomplete or the peer closed (`peerClosed`). Throws on a corrupt record.
    public func readPlaintext(into plaintext: inout [UInt8]) throws(TLSError) {
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            ERR_clear_error()
            let n = chunk.withUnsafeMutableBytes { SSL_read(ssl, $0.baseAddress, Int32($0.count)) }
            if n > 0 {
                plaintext.append(contentsOf: chunk[0..<Int(n)])
                continue
            }
            let code = SSL_get_error(ssl, n)
            if code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE { return }
            if code == SSL_ERROR_ZERO_RETURN {
                peerClosed = true
                return
            }
            throw TLSError.fromQueue("TLS read")
        }
    }

    /// Encrypts all of `plaintext` into the output (handshake must be done).
    public func write(_ plaintext: UnsafeRawBufferPointer) throws(TLSError) {
        guard !plaintext.isEmpty else { return }
        ERR_clear_error()
        let n = SSL_write(ssl, plaintext.baseAddress, Int32(plaintext.count))
        guard n == Int32(plaintext.count) else { throw TLSError.fromQueue("TLS write") }
    }

    /// Encrypts all of `plaintext` into the output (handshake must be done).
    public func write(_ plaintext: ArraySlice<UInt8>) throws(TLSError) {
        let failure = plaintext.withUnsafeBytes { raw -> TLSError? in
            do throws(TLSError) {
                try write(raw)
                return nil
            } catch { return error }
        }
        if let failure { throw failure }
    }

    /// Ciphertext waiting to be sent.
    public var pendingOutput: Int { Int(BIO_ctrl_pending(output)) }

    /// Moves the ciphertext waiting to be sent to the end of `bytes`.
    public func takeOutput(into bytes: inout [UInt8]) {
        let count = pendingOutput
        guard count > 0 else { return }
        let start = bytes.count
        bytes.append(contentsOf: repeatElement(0, count: count))
        let n = bytes.withUnsafeMutableBytes { BIO_read(output, $0.baseAddress! + start, Int32(count)) }
        bytes.removeLast(count - max(0, Int(n)))
    }

    /// Queues close_notify (take and send the output, then shut the socket down).
    public func close() {
        guard handshakeDone else { return }
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
    }

    /// The subject of the peer's certificate in RFC 2253 form (`CN=alice,O=acme`), if it
    /// presented one and it verified.
    public var verifiedPeerSubject: String? {
        guard handshakeDone, SSL_get_verify_result(ssl) == X509_V_OK, let cert = SSL_get1_peer_certificate(ssl) else { return nil }
        defer { X509_free(cert) }
        guard let bio = BIO_new(BIO_s_mem()) else { return nil }
        defer { BIO_free(bio) }
        guard X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, floe_xn_flag_rfc2253()) >= 0 else { return nil }
        var text: [UInt8] = []
        let count = Int(BIO_ctrl_pending(bio))
        text = [UInt8](repeating: 0, count: count)
        let n = text.withUnsafeMutableBytes { BIO_read(bio, $0.baseAddress, Int32(count)) }
        return String(decoding: text[0..<max(0, Int(n))], as: UTF8.self)
    }

    /// The peer certificate's serial number in hex (for logs and tests), if it sent one.
    public var peerCertificateSerial: String? {
        guard let cert = SSL_get1_peer_certificate(ssl) else { return nil }
        defer { X509_free(cert) }
        guard let bn = ASN1_INTEGER_to_BN(X509_get_serialNumber(cert), nil) else { return nil }
        defer { BN_free(bn) }
        guard let hex = BN_bn2hex(bn) else { return nil }
        defer { CRYPTO_free(hex, #file, #line) }
        return String(cString: hex)
    }

    /// The negotiated protocol, e.g. "TLSv1.3".
    public var protocolVersion: String { String(cString: SSL_get_version(ssl)) }
}
