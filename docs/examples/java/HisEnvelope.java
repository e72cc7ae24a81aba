// Sealing and opening his-interface-v1 envelopes in plain Java 11+ (AES-256-GCM, no libraries).
// For SM4-GCM use the same code with BouncyCastle: Cipher.getInstance("SM4/GCM/NoPadding", "BC")
// and a 16-byte key. Java's GCM output is ciphertext followed by the 16-byte tag, exactly the `ct`
// of the envelope, so no reshuffling is needed.
//
// Build and try it against the published vectors:
//   javac HisEnvelope.java && echo 'open|<key_hex>|<nonce_b64>|<ct_b64>|<aad>' | java HisEnvelope
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;
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

    private static byte[] hex(String s) {
        byte[] out = new byte[s.length() / 2];
        for (int i = 0; i < out.length; i++) out[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        return out;
    }

    /** Lines on stdin: "open|key_hex|nonce_b64|ct_b64|aad" or "seal|key_hex|nonce_b64|plaintext_b64|aad". */
    public static void main(String[] args) throws Exception {
        Base64.Decoder b64d = Base64.getDecoder();
        Base64.Encoder b64e = Base64.getEncoder();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        for (String line; (line = in.readLine()) != null; ) {
            String[] f = line.split("\\|", 5);
            byte[] aad = f[4].getBytes(StandardCharsets.UTF_8);
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
