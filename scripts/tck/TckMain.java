import org.eclipse.dataspacetck.core.system.ConsoleMonitor;
import org.eclipse.dataspacetck.runtime.ConsoleResultWriter;
import org.eclipse.dataspacetck.runtime.TckRuntime;

import java.io.FileReader;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;

/**
 * Stand-in for the unpublished org.eclipse.dataspacetck.dsp.suite.DspTckSuite main class (same flow:
 * -config FILE, TckRuntime over a package), plus an exit code and a parseable closing line
 * "N passed, N failed, N skipped". Run from source by Java's single-file launcher:
 *   java -cp ".tools/tck/lib/*" scripts/tck/TckMain.java -config tck.properties [package] [displayNameRegex]
 */
public class TckMain {
    public static void main(String[] args) throws Exception {
        if (args.length < 2 || !"-config".equals(args[0])) {
            System.err.println("usage: TckMain -config FILE [package] [displayNameRegex]");
            System.exit(2);
        }
        var props = new Properties();
        try (var r = new FileReader(args[1])) { props.load(r); }
        Map<String, String> p = new HashMap<>();
        props.stringPropertyNames().forEach(k -> p.put(k, props.getProperty(k)));
        p.putIfAbsent("dataspacetck.launcher", "org.eclipse.dataspacetck.dsp.system.DspSystemLauncher");
        var pkg = args.length > 2 ? args[2] : "org.eclipse.dataspacetck.dsp.verification.tp";
        var monitor = new ConsoleMonitor(Boolean.parseBoolean(p.getOrDefault("dataspacetck.debug", "false")),
                Boolean.parseBoolean(p.getOrDefault("dataspacetck.ansi", "false")));
        var b = TckRuntime.Builder.newInstance().properties(p).addPackage(pkg).monitor(monitor);
        if (args.length > 3) {
            var re = java.util.regex.Pattern.compile(args[3]);
            b.displayNameMatching(n -> re.matcher(n).find());
        }
        var result = b.build().execute();
        new ConsoleResultWriter(monitor).output(result);
        // ConsoleResultWriter shows only method-level failures; a class-level one (e.g. a missing required
        // dataspacetck.* key, thrown from DspSystemLauncher.start) would otherwise go unreported.
        result.getFailures().stream().filter(f -> f.getTestIdentifier().isContainer()).forEach(f ->
                System.out.println("CONTAINER FAILED: " + f.getTestIdentifier().getDisplayName() + ": " + f.getException()));
        long failed = result.getTestsFailedCount() + result.getContainersFailedCount();
        System.out.printf("%d passed, %d failed, %d skipped%n", result.getTestsSucceededCount(), failed,
                result.getTestsSkippedCount() + result.getTestsAbortedCount());
        System.exit(failed == 0 && result.getTestsSucceededCount() > 0 ? 0 : 1);
    }
}
