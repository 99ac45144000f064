import CCrypto

/// Why a TLS context or session failed: what was being done and OpenSSL's error queue.
public struct TLSError: Error, Sendable, CustomStringConvertible {
    public let operation: String
    public let detail: String
    public var description: String { detail.isEmpty ? operation : "\(operation): \(detail)" }

    /// Drains this thread's OpenSSL error queue into one line.
    static func fromQueue(_ operation: String) -> TLSError {
        var lines: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            lines.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return TLSError(operation: operation, detail: lines.joined(separator: "; "))
    }
}

/// Whether a TLS server asks for client certificates (Kafka's `ssl.client.auth`).
public enum TLSClientAuth: String, Sendable, CaseIterable {
    /// No certificate is asked for.
    case none
    /// One is asked for; a client without one is let in, one with a certificate that does not verify is not.
    case requested
    /// A client without a verifying certificate is refused.
    case required
}

/// An OpenSSL `SSL_CTX`: certificates, trust and protocol versions (TLS 1.2 and 1.3 only) shared
/// by the sessions made from it. Immutable once built; sessions keep their own reference, so a
/// context replaced by a reload lives on until its last session ends.
public final class TLSContext: @unchecked Sendable {
    // @unchecked Sendable: the SSL_CTX is configured in the initializer and only read after
    // (SSL_new from any thread is safe on a context no longer being changed).
    let pointer: OpaquePointer
    public let isServer: Bool

    private init(server: Bool) throws(TLSError) {
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()) else {
            throw TLSError.fromQueue("SSL_CTX_new")
        }
        pointer = ctx
        isServer = server
        guard floe_ssl_ctx_tls12_to_13(ctx) != 0 else { throw TLSError.fromQueue("restricting protocol versions to TLS 1.2-1.3") }
        floe_ssl_ctx_no_renegotiation(ctx)
    }

    deinit { SSL_CTX_free(pointer) }

    /// A server context: the certificate chain and key (PEM files; the key must match the
    /// certificate), and, unless `clientAuth` is `.none`, the CAs client certificates must chain to.
    public static func server(certificateFile: String, keyFile: String, clientCAFile: String? = nil,
                              clientAuth: TLSClientAuth = .none) throws(TLSError) -> TLSContext {
        let context = try TLSContext(server: true)
        let ctx = context.pointer
        guard SSL_CTX_use_certificate_chain_file(ctx, certificateFile) == 1 else {
            throw TLSError.fromQueue("loading the certificate chain \(certificateFile)")
        }
        guard SSL_CTX_use_PrivateKey_file(ctx, keyFile, SSL_FILETYPE_PEM) == 1 else {
            throw TLSError.fromQueue("loading the private key \(keyFile)")
        }
        guard SSL_CTX_check_private_key(ctx) == 1 else {
            throw TLSError.fromQueue("the key \(keyFile) does not match the certificate \(certificateFile)")
        }
        if clientAuth != .none {
            guard let clientCAFile, !clientCAFile.isEmpty else {
                throw TLSError(operation: "client certificates are \(clientAuth.rawValue)", detail: "no client CA file is set")
            }
            guard SSL_CTX_load_verify_locations(ctx, clientCAFile, nil) == 1 else {
                throw TLSError.fromQueue("loading the client CA file \(clientCAFile)")
            }
            if let names = SSL_load_client_CA_file(clientCAFile) { SSL_CTX_set_client_CA_list(ctx, names) }
            let mode = clientAuth == .required ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER
            SSL_CTX_set_verify(ctx, mode, nil)
        }
        return context
    }

    /// A client context: servers are always verified, against `caFile` (PEM bundle) or, when
    /// nil, the system's trust store; `certificateFile`/`keyFile` are presented to servers that ask.
    public static func client(caFile: String?, certificateFile: String? = nil, keyFile: String? = nil) throws(TLSError) -> TLSContext {
        let context = try TLSContext(server: false)
        let ctx = context.pointer
        if let caFile, !caFile.isEmpty {
            guard SSL_CTX_load_verify_locations(ctx, caFile, nil) == 1 else { throw TLSError.fromQueue("loading the CA file \(caFile)") }
        } else {
            guard SSL_CTX_set_default_verify_paths(ctx) == 1 else { throw TLSError.fromQueue("loading the system trust store") }
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        if let certificateFile, !certificateFile.isEmpty {
            let keyFile = keyFile.flatMap { $0.isEmpty ? nil : $0 } ?? certificateFile
            guard SSL_CTX_use_certificate_chain_file(ctx, certificateFile) == 1 else {
                throw TLSError.fromQueue("loading the client certificate \(certificateFile)")
            }
            guard SSL_CTX_use_PrivateKey_file(ctx, keyFile, SSL_FILETYPE_PEM) == 1, SSL_CTX_check_private_key(ctx) == 1 else {
                throw TLSError.fromQueue("loading the client key \(keyFile)")
            }
        }
        return context
    }
}
