// A minimal HIS in plain Java 17 (JDK only), written from docs/his-interface.md: it collects, refunds,
// withdraws and books through the bridge, with the step-6 checks. It uses HisEnvelope.java for the
// cryptography (AES-256-GCM, Ed25519); compile both together:
//
//   javac HisEnvelope.java HisClient.java
//   java HisClient http://127.0.0.1:8765 <key_hex> <kid> T0001 devices.csv
//
// and type commands (the conformance kit's test drives it the same way, docs/conformance.md):
//   send|ORDER|+12.50|EXPIRES_IN_S or -    seal and POST an instruction, then poll until it ends
//   withdraw|MSG_ID|ORDER                   POST /v1/instructions/{MSG_ID}/cancel (1.1 C)
//   booked|ORDER|AMOUNT   -> yes|no         was AMOUNT booked exactly once for ORDER?
//   nothing|ORDER         -> yes|no         was nothing booked for ORDER?
//   alerted|ORDER         -> yes|no         did a result for ORDER fail step 6 (an alert was raised)?
//
// What a real HIS does, in the order docs/his-interface.md gives it:
//   - a new msg_id for every new instruction; the same envelope bytes on a retry (we keep them);
//   - 202: poll GET /v1/results/{msg_id}?wait=N until 200 (a result) or 410 expired_undelivered;
//     show the 202's last_event (a declined code) to the operator while it goes on;
//   - step 6 on every 200: tag, device_id in the registry, `sig` by that device, reply_to, order_no,
//     amount; a failure books nothing, raises an alert and asks again with GET, never a new `+`;
//   - book a result at most once per instruction (by reply_to); duplicate_order books nothing new.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

public final class HisClient {
    private static final int STEP6_ASK_AGAIN = 3;
    private final String bridge;
    private final byte[] key;
    private final String kid;
    private final String terminalId;
    private final Map<String, byte[]> registry = new HashMap<>();  // device_id -> Ed25519 public key (step 2)
    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
    private final Map<String, String[]> sent = new ConcurrentHashMap<>();  // msg_id -> {order_no, amount, ts}
    private final Map<String, List<String>> booked = new ConcurrentHashMap<>();  // order_no -> amounts booked
    private final Map<String, Boolean> bookedMsgIds = new ConcurrentHashMap<>();
    private final Map<String, Integer> alerts = new ConcurrentHashMap<>();
    private final List<Thread> threads = new ArrayList<>();

    HisClient(String bridge, String keyHex, String kid, String terminalId, Path registryCsv) throws Exception {
        this.bridge = bridge;
        this.key = hex(keyHex);
        this.kid = kid;
        this.terminalId = terminalId;
        List<String> lines = Files.readAllLines(registryCsv, StandardCharsets.UTF_8);
        for (String line : lines.subList(1, lines.size())) {  // device_id,model,serial_no,public_key
            String[] f = line.strip().split(",");
            if (f.length >= 4) registry.put(f[0], Base64.getDecoder().decode(f[3]));
        }
    }

    // ------------------------------------------------------------------ step 3: seal and send

    String newMsgId() {
        return "HIS-" + terminalId + "-" + System.currentTimeMillis() + "-" + Long.toHexString(Double.doubleToLongBits(Math.random())).substring(0, 8);
    }

    /** A sealed envelope (instruction or cancel) as compact JSON; plaintext is compact UTF-8 JSON. */
    String seal(String type, String msgId, String replyTo, String plaintext) throws Exception {
        long ts = System.currentTimeMillis() / 1000;
        byte[] nonce = HisEnvelope.newNonce();
        byte[] aad = HisEnvelope.aad(1, type, "AES-256-GCM", kid, msgId, ts, terminalId, replyTo);
        byte[] ct = HisEnvelope.seal(key, nonce, plaintext.getBytes(StandardCharsets.UTF_8), aad);
        Base64.Encoder b64 = Base64.getEncoder();
        return "{\"v\":1,\"type\":" + str(type) + ",\"suite\":\"AES-256-GCM\",\"kid\":" + str(kid) + ",\"msg_id\":" + str(msgId)
                + ",\"ts\":" + ts + ",\"terminal_id\":" + str(terminalId) + (replyTo == null ? "" : ",\"reply_to\":" + str(replyTo))
                + ",\"nonce\":" + str(b64.encodeToString(nonce)) + ",\"ct\":" + str(b64.encodeToString(ct)) + "}";
    }

    void send(String order, String amount, Long expiresIn) throws Exception {
        String msgId = newMsgId();
        String plaintext = "{\"terminal_id\":" + str(terminalId) + ",\"order_no\":" + str(order) + ",\"amount\":" + str(amount)
                + (expiresIn == null ? "" : ",\"expires_at\":" + (System.currentTimeMillis() / 1000 + expiresIn)) + "}";
        String envelope = seal("instruction", msgId, null, plaintext);
        sent.put(msgId, new String[] {order, amount});
        HttpResponse<String> answer = post("/v1/instructions?wait=30", envelope);
        follow(msgId, answer);
    }

    void withdraw(String msgId, String order) throws Exception {
        String plaintext = "{\"terminal_id\":" + str(terminalId) + ",\"order_no\":" + str(order) + "}";
        HttpResponse<String> answer = post("/v1/instructions/" + msgId + "/cancel?wait=30", seal("cancel", newMsgId(), msgId, plaintext));
        follow(msgId, answer);
    }

    /** Steps 4-6 from HIS's side: poll until the instruction ends, verify, book (at most once). */
    void follow(String msgId, HttpResponse<String> answer) throws Exception {
        int failures = 0;
        for (int polls = 0; polls < 100; polls++) {
            int status = answer.statusCode();
            if (status == 200) {
                String problem = step6(msgId, answer.body());
                if (problem == null) return;
                String order = sent.get(msgId)[0];
                alerts.merge(order, 1, Integer::sum);  // book nothing, alert, ask again (never a new `+`)
                System.err.println("ALERT: the result for " + msgId + " failed step 6: " + problem);
                if (++failures > STEP6_ASK_AGAIN) return;
            } else if (status == 202) {
                Map<String, Object> body = Json.parseObject(answer.body());
                Object event = body.get("last_event");
                if (event instanceof Map) System.err.println(msgId + ": " + ((Map<?, ?>) event).get("code") + ": " + ((Map<?, ?>) event).get("message"));
            } else {
                System.err.println(msgId + ": HTTP " + status + " " + answer.body());  // 410: it expired before any POS took it
                return;
            }
            answer = get("/v1/results/" + msgId + "?wait=" + (status == 200 ? 0 : 30));
        }
    }

    /** Step 6; null if the result may be booked (and books it), else what failed. */
    String step6(String msgId, String body) throws Exception {
        Map<String, Object> e = Json.parseObject(body);
        String deviceId = (String) e.get("device_id");
        byte[] aad = HisEnvelope.aad(((Number) e.get("v")).intValue(), (String) e.get("type"), (String) e.get("suite"),
                (String) e.get("kid"), (String) e.get("msg_id"), ((Number) e.get("ts")).longValue(), deviceId, (String) e.get("reply_to"));
        byte[] ct = Base64.getDecoder().decode((String) e.get("ct"));
        byte[] plain;
        try {
            plain = HisEnvelope.open(key, Base64.getDecoder().decode((String) e.get("nonce")), ct, aad);
        } catch (javax.crypto.AEADBadTagException bad) {
            return "the tag does not verify";
        }
        byte[] publicKey = registry.get(deviceId);
        if (publicKey == null) return "device " + deviceId + " is not in our device registry";
        if (!(e.get("sig") instanceof String) || !HisEnvelope.verifySig(publicKey, aad, ct, Base64.getDecoder().decode((String) e.get("sig"))))
            return "sig does not verify with the key of " + deviceId;
        if (!msgId.equals(e.get("reply_to"))) return "it answers " + e.get("reply_to");
        Map<String, Object> r = Json.parseObject(new String(plain, StandardCharsets.UTF_8));
        String[] mine = sent.get(msgId);
        if (!deviceId.equals(r.get("device_id"))) return "device_id differs between header and plaintext";
        if (!mine[0].equals(r.get("order_no"))) return "order " + r.get("order_no") + ", we sent " + mine[0];
        if (!mine[1].equals(r.get("amount"))) return "amount " + r.get("amount") + ", we sent " + mine[1];
        String payStatus = (String) r.get("pay_status");
        boolean money = "SUCCESS".equals(payStatus) || "REFUNDED".equals(payStatus);
        if (money && !"duplicate_order".equals(r.get("error_code")) && bookedMsgIds.putIfAbsent(msgId, true) == null)
            booked.computeIfAbsent(mine[0], k -> new ArrayList<>()).add(mine[1]);
        System.err.println(msgId + ": verified " + payStatus + " " + r.get("error_code"));
        return null;
    }

    HttpResponse<String> post(String path, String body) throws Exception {
        HttpRequest request = HttpRequest.newBuilder(URI.create(bridge + path)).timeout(Duration.ofSeconds(45))
                .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body)).build();
        return http.send(request, HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
    }

    HttpResponse<String> get(String path) throws Exception {
        HttpRequest request = HttpRequest.newBuilder(URI.create(bridge + path)).timeout(Duration.ofSeconds(45)).GET().build();
        return http.send(request, HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
    }

    // ------------------------------------------------------------------ commands

    void background(Runnable work) {
        Thread thread = new Thread(work);
        synchronized (threads) {
            threads.add(thread);
        }
        thread.start();
    }

    void settle() throws InterruptedException {
        List<Thread> all;
        synchronized (threads) {
            all = new ArrayList<>(threads);
        }
        for (Thread t : all) t.join(90_000);
    }

    public static void main(String[] args) throws Exception {
        HisClient his = new HisClient(args[0], args[1], args[2], args[3], Path.of(args[4]));
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        for (String line; (line = in.readLine()) != null; ) {
            String[] f = line.strip().split("\\|");
            switch (f[0]) {
                case "send" -> his.background(() -> his.run(() -> his.send(f[1], f[2], f[3].equals("-") ? null : Long.valueOf(f[3]))));
                case "withdraw" -> his.background(() -> his.run(() -> his.withdraw(f[1], f[2])));
                case "booked" -> { his.settle(); answer(his.booked.getOrDefault(f[1], List.of()).stream().filter(f[2]::equals).count() == 1); }
                case "nothing" -> { his.settle(); answer(his.booked.getOrDefault(f[1], List.of()).isEmpty()); }
                case "alerted" -> { his.settle(); answer(his.alerts.getOrDefault(f[1], 0) > 0); }
                default -> answer(false);
            }
        }
    }

    interface Work { void run() throws Exception; }

    void run(Work work) {
        try {
            work.run();
        } catch (Exception e) {
            System.err.println("error: " + e);
        }
    }

    static void answer(boolean yes) {
        System.out.println(yes ? "yes" : "no");
        System.out.flush();
    }

    static String str(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') b.append('\\').append(c);
            else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
            else b.append(c);  // non-ASCII raw, as the vectors' compact JSON
        }
        return b.append('"').toString();
    }

    static byte[] hex(String s) {
        byte[] out = new byte[s.length() / 2];
        for (int i = 0; i < out.length; i++) out[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        return out;
    }

    /** Just enough JSON for the bridge's answers: objects, arrays, strings, integers, true/false/null. */
    static final class Json {
        private final String s;
        private int i;

        private Json(String s) { this.s = s; }

        @SuppressWarnings("unchecked")
        static Map<String, Object> parseObject(String text) {
            Json p = new Json(text);
            Object value = p.value();
            p.ws();
            if (p.i != text.length() || !(value instanceof Map)) throw new IllegalArgumentException("not a JSON object");
            return (Map<String, Object>) value;
        }

        private void ws() { while (i < s.length() && " \t\r\n".indexOf(s.charAt(i)) >= 0) i++; }

        private Object value() {
            ws();
            char c = s.charAt(i);
            if (c == '{') {
                Map<String, Object> m = new LinkedHashMap<>();
                i++;
                ws();
                if (s.charAt(i) == '}') { i++; return m; }
                while (true) {
                    ws();
                    String k = string();
                    ws();
                    expect(':');
                    if (m.put(k, value()) != null) throw new IllegalArgumentException("duplicate key " + k);
                    ws();
                    if (s.charAt(i) == ',') { i++; continue; }
                    expect('}');
                    return m;
                }
            }
            if (c == '[') {
                List<Object> l = new ArrayList<>();
                i++;
                ws();
                if (s.charAt(i) == ']') { i++; return l; }
                while (true) {
                    l.add(value());
                    ws();
                    if (s.charAt(i) == ',') { i++; continue; }
                    expect(']');
                    return l;
                }
            }
            if (c == '"') return string();
            if (s.startsWith("true", i)) { i += 4; return Boolean.TRUE; }
            if (s.startsWith("false", i)) { i += 5; return Boolean.FALSE; }
            if (s.startsWith("null", i)) { i += 4; return null; }
            int start = i;
            while (i < s.length() && "-0123456789".indexOf(s.charAt(i)) >= 0) i++;
            if (start == i || (i < s.length() && ".eE".indexOf(s.charAt(i)) >= 0)) throw new IllegalArgumentException("only integers here");
            return Long.valueOf(s.substring(start, i));
        }

        private void expect(char c) {
            if (s.charAt(i) != c) throw new IllegalArgumentException("expected " + c + " at " + i);
            i++;
        }

        private String string() {
            expect('"');
            StringBuilder b = new StringBuilder();
            while (true) {
                char c = s.charAt(i++);
                if (c == '"') return b.toString();
                if (c != '\\') { b.append(c); continue; }
                char e = s.charAt(i++);
                switch (e) {
                    case 'n' -> b.append('\n');
                    case 't' -> b.append('\t');
                    case 'r' -> b.append('\r');
                    case 'b' -> b.append('\b');
                    case 'f' -> b.append('\f');
                    case 'u' -> { b.append((char) Integer.parseInt(s.substring(i, i + 4), 16)); i += 4; }
                    default -> b.append(e);
                }
            }
        }
    }
}
