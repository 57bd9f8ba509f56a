/* coldstart: the phases of a cold start read from a pod, their arithmetic (never backwards,
 * durations that add up), status.lastColdStart and the Event's one-line breakdown. */
#include <criterion/criterion.h>
#include <string.h>

#include "controller/coldstart.h"

#define T0_MS ((int64_t)1700000000000) /* 2023-11-14T22:13:20Z */

static const char *POD =
    "{\"metadata\":{\"creationTimestamp\":\"2023-11-14T22:13:21Z\"},"
    "\"status\":{\"podIP\":\"10.0.0.7\",\"conditions\":["
    "{\"type\":\"PodScheduled\",\"status\":\"True\",\"lastTransitionTime\":\"2023-11-14T22:13:"
    "21Z\"},"
    "{\"type\":\"Ready\",\"status\":\"True\",\"lastTransitionTime\":\"2023-11-14T22:14:01Z\"}],"
    "\"containerStatuses\":["
    "{\"name\":\"a\",\"state\":{\"running\":{\"startedAt\":\"2023-11-14T22:13:50Z\"}}},"
    "{\"name\":\"b\",\"state\":{\"running\":{\"startedAt\":\"2023-11-14T22:13:56Z\"}}}]}}";

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    cr_assert(cJSON_IsNumber(v), "%s is a number", k);
    return v->valuedouble;
}

/* A wake of 41.2 s: held at T0 + 0.5 s, the pod's moments from POD, first byte 0.2 s after
 * Ready. */
static void full_wake(struct coldstart *cs)
{
    coldstart_init(cs);
    cs->at_ms[COLD_HELD] = T0_MS + 500;
    cs->at_ms[COLD_SCALE_SENT] = T0_MS + 520;
    cs->at_ms[COLD_SCALE_ANSWERED] = T0_MS + 600;
    cJSON *pod = cJSON_Parse(POD);
    cr_assert_eq(coldstart_read_pod(cs, pod), 4, "all four pod moments found");
    cJSON_Delete(pod);
    cs->at_ms[COLD_FIRST_BYTE] = T0_MS + 41700;
}

Test(coldstart, reads_the_pods_moments)
{
    struct coldstart cs;
    full_wake(&cs);
    cr_assert_eq(cs.at_ms[COLD_POD_CREATED], T0_MS + 1000);
    cr_assert_eq(cs.at_ms[COLD_POD_SCHEDULED], T0_MS + 1000);
    cr_assert_eq(cs.at_ms[COLD_CONTAINERS_STARTED], T0_MS + 36000, "the latest container start");
    cr_assert_eq(cs.at_ms[COLD_READY], T0_MS + 41000);
}

Test(coldstart, a_pod_without_scheduling_or_running_containers_leaves_those_out)
{
    static const char *const pods[] = {
        "{\"metadata\":{\"creationTimestamp\":\"2023-11-14T22:13:21Z\"},\"status\":{"
        "\"conditions\":[{\"type\":\"Ready\",\"status\":\"False\","
        "\"lastTransitionTime\":\"2023-11-14T22:13:22Z\"}],\"containerStatuses\":["
        "{\"name\":\"a\",\"state\":{\"running\":{\"startedAt\":\"2023-11-14T22:13:50Z\"}}},"
        "{\"name\":\"b\",\"state\":{\"waiting\":{\"reason\":\"ImagePullBackOff\"}}}]}}",
        "{\"metadata\":{},\"status\":{\"conditions\":\"not a list\",\"containerStatuses\":7}}",
        "{\"metadata\":{\"creationTimestamp\":\"yesterday\"},\"status\":{\"conditions\":[{"
        "\"type\":\"PodScheduled\",\"status\":\"True\",\"lastTransitionTime\":3}]}}",
        "[]",
    };
    for (size_t i = 0; i < sizeof(pods) / sizeof(pods[0]); i++) {
        struct coldstart cs;
        coldstart_init(&cs);
        cJSON *pod = cJSON_Parse(pods[i]);
        cr_assert_not_null(pod);
        int found = coldstart_read_pod(&cs, pod);
        cJSON_Delete(pod);
        cr_assert_eq(cs.at_ms[COLD_POD_SCHEDULED], -1, "pod %zu: no PodScheduled True", i);
        cr_assert_eq(cs.at_ms[COLD_CONTAINERS_STARTED], -1, "pod %zu: a container not running", i);
        cr_assert_eq(cs.at_ms[COLD_READY], -1, "pod %zu: not Ready", i);
        cr_assert_eq(found, i == 0 ? 1 : 0, "pod %zu", i);
    }
    struct coldstart cs;
    coldstart_init(&cs);
    cr_assert_eq(coldstart_read_pod(&cs, NULL), 0, "no pod: nothing, no crash");
}

Test(coldstart, phases_from_the_start_never_go_backwards_and_durations_add_up)
{
    struct coldstart cs;
    full_wake(&cs);
    int64_t ms[COLD_N], d[COLD_N];
    int64_t total = coldstart_phases_ms(&cs, ms);
    cr_assert_eq(total, 41200);
    cr_assert_eq(ms[COLD_HELD], 0);
    cr_assert_eq(ms[COLD_SCALE_SENT], 20);
    cr_assert_eq(ms[COLD_SCALE_ANSWERED], 100);
    cr_assert_eq(ms[COLD_POD_CREATED], 500);
    cr_assert_eq(ms[COLD_CONTAINERS_STARTED], 35500);
    cr_assert_eq(ms[COLD_READY], 40500);
    cr_assert_eq(ms[COLD_FIRST_BYTE], 41200);
    coldstart_durations(&cs, d);
    cr_assert_eq(d[COLD_HELD], -1, "the start ends no phase");
    int64_t sum = 0;
    for (int p = 0; p < COLD_N; p++)
        if (d[p] >= 0)
            sum += d[p];
    cr_assert_eq(sum, total, "the durations add up to the total");
    cr_assert_eq(d[COLD_CONTAINERS_STARTED], 35000, "image pull and start: 35 s");

    /* A pod created in the same second as the first held request reads earlier (seconds, cut):
     * it is taken as the phase before it, not as negative. */
    cs.at_ms[COLD_POD_CREATED] = T0_MS;
    coldstart_phases_ms(&cs, ms);
    cr_assert_eq(ms[COLD_POD_CREATED], 100, "no earlier than scaleAnswered");
    coldstart_durations(&cs, d);
    cr_assert_eq(d[COLD_POD_CREATED], 0);
}

Test(coldstart, the_start_is_the_earliest_moment_known)
{
    struct coldstart cs;
    full_wake(&cs);
    cs.at_ms[COLD_HELD] = -1; /* a replica that did not see the first held request */
    cr_assert_eq(coldstart_start_ms(&cs), T0_MS + 520, "from the scale call sent");
    cs.at_ms[COLD_SCALE_SENT] = cs.at_ms[COLD_SCALE_ANSWERED] = -1;
    cr_assert_eq(coldstart_start_ms(&cs), T0_MS + 1000, "from the pod's creation");
    int64_t d[COLD_N];
    coldstart_durations(&cs, d);
    cr_assert_eq(d[COLD_POD_CREATED], -1);
    cr_assert_eq(d[COLD_POD_SCHEDULED], 0);
    coldstart_init(&cs);
    cr_assert_eq(coldstart_start_ms(&cs), -1);
    cr_assert_null(coldstart_status(&cs), "nothing known: no status");
}

Test(coldstart, status_has_each_known_phase_in_ms_from_started_at)
{
    struct coldstart cs;
    full_wake(&cs);
    cs.at_ms[COLD_POD_SCHEDULED] = -1;
    cJSON *st = coldstart_status(&cs);
    cr_assert_not_null(st);
    cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(st, "startedAt")->valuestring,
                     "2023-11-14T22:13:20.500Z");
    cr_assert_eq(num(st, "totalMs"), 41200);
    const cJSON *ph = cJSON_GetObjectItemCaseSensitive(st, "phases");
    cr_assert_eq(num(ph, "scaleSent"), 20);
    cr_assert_eq(num(ph, "scaleAnswered"), 100);
    cr_assert_eq(num(ph, "podCreated"), 500);
    cr_assert_null(cJSON_GetObjectItemCaseSensitive(ph, "podScheduled"), "unknown: absent");
    cr_assert_eq(num(ph, "containersStarted"), 35500);
    cr_assert_eq(num(ph, "ready"), 40500);
    cr_assert_eq(num(ph, "firstByte"), 41200);
    cr_assert_null(cJSON_GetObjectItemCaseSensitive(ph, "held"), "the start is startedAt");
    cJSON_Delete(st);
}

Test(coldstart, breakdown_in_one_line)
{
    struct coldstart cs;
    full_wake(&cs);
    char line[256];
    coldstart_breakdown(&cs, line, sizeof(line));
    cr_assert_str_eq(line, "cold start 41.2 s: scale 0.1 s, pod creation 0.4 s, scheduling 0.0 s, "
                           "image pull and container start 35.0 s, readiness 5.0 s, first byte "
                           "0.7 s");
    cs.at_ms[COLD_POD_CREATED] = cs.at_ms[COLD_POD_SCHEDULED] = -1;
    cs.at_ms[COLD_CONTAINERS_STARTED] = cs.at_ms[COLD_READY] = -1;
    coldstart_breakdown(&cs, line, sizeof(line));
    cr_assert_str_eq(line, "cold start 41.2 s: scale 0.1 s, first byte 41.1 s",
                     "a failed pod list: the pod's time counts in the next phase known");
    coldstart_breakdown(&cs, line, 12);
    cr_assert_str_eq(line, "cold start ", "cut, terminated");
}

/* Early readiness: a pod passed holdfast's own probes 0.5 s after its containers started, the
 * first held byte went 5 ms later, the kubelet's Ready came 7.5 s after that. */
Test(coldstart, early_readiness_puts_the_first_byte_before_the_kubelets_ready)
{
    struct coldstart cs;
    full_wake(&cs);
    cs.at_ms[COLD_EARLY_READY] = T0_MS + 36500;
    cs.at_ms[COLD_FIRST_BYTE] = T0_MS + 36505;
    cs.at_ms[COLD_READY] = T0_MS + 44000;
    int64_t ms[COLD_N], d[COLD_N];
    int64_t total = coldstart_phases_ms(&cs, ms);
    cr_assert_eq(total, 36005, "the total is what the held client waited: to the first byte");
    cr_assert_eq(ms[COLD_EARLY_READY], 36000);
    cr_assert_eq(ms[COLD_FIRST_BYTE], 36005, "not pushed after Ready");
    cr_assert_eq(ms[COLD_READY], 43500);
    coldstart_durations(&cs, d);
    cr_assert_eq(d[COLD_EARLY_READY], 500, "containers started -> early ready");
    cr_assert_eq(d[COLD_FIRST_BYTE], 5, "early ready -> first byte");
    cr_assert_eq(d[COLD_READY], 7495, "how long the kubelet came after the first byte");
    cJSON *st = coldstart_status(&cs);
    const cJSON *ph = cJSON_GetObjectItemCaseSensitive(st, "phases");
    cr_assert_eq(num(ph, "earlyReady"), 36000);
    cr_assert_eq(num(st, "totalMs"), 36005);
    /* in the order they happened */
    const char *names[3];
    int k = 0;
    for (const cJSON *it = ph->child; it; it = it->next)
        if (strcmp(it->string, "earlyReady") == 0 || strcmp(it->string, "ready") == 0 ||
            strcmp(it->string, "firstByte") == 0)
            names[k++] = it->string;
    cr_assert_eq(k, 3);
    cr_assert_str_eq(names[0], "earlyReady");
    cr_assert_str_eq(names[1], "firstByte");
    cr_assert_str_eq(names[2], "ready");
    cJSON_Delete(st);
    char line[256];
    coldstart_breakdown(&cs, line, sizeof(line));
    cr_assert_str_eq(line, "cold start 36.0 s: scale 0.1 s, pod creation 0.4 s, scheduling 0.0 s, "
                           "image pull and container start 35.0 s, readiness 0.5 s, first byte "
                           "0.0 s, then the kubelet's Ready 7.5 s");
    cr_assert_str_eq(coldstart_phase_label(COLD_EARLY_READY), "early_ready");
    cr_assert_str_eq(coldstart_phase_name(COLD_EARLY_READY), "earlyReady");
}

Test(coldstart, monotonic_times_as_wall_ms)
{
    cr_assert_eq(coldstart_mono_to_wall_ms(5000000000ull, 7000000000ull, 1700000002000000000ull),
                 T0_MS, "2 s ago");
    cr_assert_str_eq(coldstart_phase_label(COLD_CONTAINERS_STARTED), "containers_started");
    cr_assert_str_eq(coldstart_phase_name(COLD_FIRST_BYTE), "firstByte");
}
