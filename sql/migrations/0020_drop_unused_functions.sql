-- Drop what nothing calls: claim_send (claim_message succeeded it), alert and record_alert_delivery (alert_notice, record_alert_notice), resume_enrollment.
-- depends: 0019_create_number_pools

drop function pgflow.alert(bigint);

drop function pgflow.claim_send(bigint,uuid,timestamp with time zone);

drop function pgflow.record_alert_delivery(bigint,text,timestamp with time zone);

drop function pgflow.resume_enrollment(bigint,text,timestamp with time zone);
