// Sealing and opening his-interface envelopes in plain Java 15+ (AES-256-GCM and Ed25519, no libraries).
// For SM4-GCM use the same code with BouncyCastle: Cipher.getInstance("SM4/GCM/NoPadding", "BC")
// and a 16-byte key. Java's GCM output is ciphertext followed by the 16-byte tag, exactly the `ct`
// of the envelope, so no reshuffling is needed.
//
// His-interface 1.1: every result carries `sig`, the device's Ed25519 signature over AAD || CT. Step 6
// verifies it with the device's public key from the device registry (base64 of the raw 32 bytes)
// BEFORE trusting anything in the result: the shared key alone cannot produce it. HIS may sign its
// instructions the same way (`his_sig`, with its own key). Ed25519 is in the JDK since 15.
//
// Build and try it against the published vectors:
//   javac HisEnvelope.java && echo 'open|<key_hex>|<nonce_b64>|<ct_b64>|<aad>' | java HisEnvelope
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.security.KeyFactory;
import java.security.PrivateKey;
import java.security.PublicKey;
import java.security.SecureRandom;
import java.security.Signature;
import java.security.spec.PKCS8EncodedKeySpec;
import java.security.spec.X509EncodedKeySpec;
import java.util.Base64;
import javax.crypto.Cipher;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.SecretKeySpec;

public final class HisEnvelope {
    private static final SecureRandom RANDOM = new SecureRandom();

    /** AAD = UTF-8 of v|type|suite|kid|msg_id|ts|terminal_id-or-device_id|reply_to-or-empty. */
    public static byte[] aad(int v, String type, String suite, String kid, String msgId, long ts,
                             String partyId, String replyTo) {
        String s = v + "|" + type + "|" + suite + "|" + kid + "|" + msgId + "|" + ts + "|" + partyId + "|"
                + (replyTo == null ? "" : replyTo);
        return s.getBytes(StandardCharsets.UTF_8);
    }

    /** A fresh 12-byte nonce for every message: never reuse one with the same key. */
    public static byte[] newNonce() {
        byte[] nonce = new byte[12];
        RANDOM.nextBytes(nonce);
        return nonce;
    }

    /** Returns ciphertext followed by the 16-byte tag: base64 of this is the envelope's "ct". */
    public static byte[] seal(byte[] key, byte[] nonce, byte[] plaintextUtf8Json, byte[] aad) throws Exception {
        Cipher cipher = Cipher.getInstance("AES/GCM/NoPadding");
        cipher.init(Cipher.ENCRYPT_MODE, new SecretKeySpec(key, "AES"), new GCMParameterSpec(128, nonce));
        cipher.updateAAD(aad);
        return cipher.doFinal(plaintextUtf8Json);
    }

    /** Throws javax.crypto.AEADBadTagException when anything was altered: refuse the message. */
    public static byte[] open(byte[] key, byte[] nonce, byte[] ct, byte[] aad) throws Exception {
        Cipher cipher = Cipher.getInstance("AES/GCM/NoPadding");
        cipher.init(Cipher.DECRYPT_MODE, new SecretKeySpec(key, "AES"), new GCMParameterSpec(128, nonce));
        cipher.updateAAD(aad);
        return cipher.doFinal(ct);
    }

    // DER prefixes that wrap a raw 32-byte Ed25519 key (RFC 8410) so the JDK's KeyFactory takes it.
    private static final byte[] SPKI_PREFIX = hex("302a300506032b6570032100");
    private static final byte[] PKCS8_PREFIX = hex("302e020100300506032b657004220420");

    private static byte[] concat(byte[] a, byte[] b) {
        byte[] out = new byte[a.length + b.length];
        System.arraycopy(a, 0, out, 0, a.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }

    /** The registry's public_key (base64 of 32 raw bytes) as a JDK key. */
    public static PublicKey ed25519PublicKey(byte[] raw32) throws Exception {
        if (raw32.length != 32) throw new IllegalArgumentException("an Ed25519 public key is 32 bytes");
        return KeyFactory.getInstance("Ed25519").generatePublic(new X509EncodedKeySpec(concat(SPKI_PREFIX, raw32)));
    }

    /** Step 6 (1.1 A): true only if `sig` is the device's signature of AAD || CT. Refuse the result otherwise. */
    public static boolean verifySig(byte[] devicePublicKey32, byte[] aad, byte[] ct, byte[] sig) throws Exception {
        if (sig.length != 64) return false;
        Signature verifier = Signature.getInstance("Ed25519");
        verifier.initVerify(ed25519PublicKey(devicePublicKey32));
        verifier.update(aad);
        verifier.update(ct);
        try {
            return verifier.verify(sig);
        } catch (java.security.SignatureException e) {  // not even a valid encoding (e.g. an invalid point)
            return false;
        }
    }

    /** 1.1 B: HIS's `his_sig` over AAD || CT of a sealed instruction, with HIS's 32-byte private seed. */
    public static byte[] hisSig(byte[] hisSeed32, byte[] aad, byte[] ct) throws Exception {
        PrivateKey key = KeyFactory.getInstance("Ed25519").generatePrivate(new PKCS8EncodedKeySpec(concat(PKCS8_PREFIX, hisSeed32)));
        Signature signer = Signature.getInstance("Ed25519");
        signer.initSign(key);
        signer.update(aad);
        signer.update(ct);
        return signer.sign();
    }

    private static byte[] hex(String s) {
        byte[] out = new byte[s.length() / 2];
        for (int i = 0; i < out.length; i++) out[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        return out;
    }

    /** Lines on stdin: "open|key_hex|nonce_b64|ct_b64|aad", "seal|key_hex|nonce_b64|plaintext_b64|aad",
     *  "verify|public_key_b64|sig_b64|ct_b64|aad" (prints ok or bad_sig), "sign|seed_hex|-|ct_b64|aad". */
    public static void main(String[] args) throws Exception {
        Base64.Decoder b64d = Base64.getDecoder();
        Base64.Encoder b64e = Base64.getEncoder();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        for (String line; (line = in.readLine()) != null; ) {
            String[] f = line.split("\\|", 5);
            byte[] aad = f[4].getBytes(StandardCharsets.UTF_8);
            if (f[0].equals("verify")) {
                boolean ok = verifySig(b64d.decode(f[1]), aad, b64d.decode(f[3]), b64d.decode(f[2]));
                System.out.println(ok ? "ok" : "bad_sig");
                continue;
            }
            if (f[0].equals("sign")) {
                System.out.println(b64e.encodeToString(hisSig(hex(f[1]), aad, b64d.decode(f[3]))));
                continue;
            }
            try {
                byte[] out = f[0].equals("seal")
                        ? seal(hex(f[1]), b64d.decode(f[2]), b64d.decode(f[3]), aad)
                        : open(hex(f[1]), b64d.decode(f[2]), b64d.decode(f[3]), aad);
                System.out.println(b64e.encodeToString(out));
            } catch (javax.crypto.AEADBadTagException e) {
                System.out.println("auth_failed");
            }
        }
    }
}
