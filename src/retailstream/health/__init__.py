"""Pipeline health: what each streaming query reports, how far it is behind Kafka,
and one line saying what is wrong (`retailstream status`, the API's `/metrics`)."""
