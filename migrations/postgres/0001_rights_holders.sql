-- Rights holders own references; a rights_holder API key is scoped to one of them.
CREATE TABLE rights_holders (
    id         TEXT    NOT NULL CONSTRAINT rights_holders_pk PRIMARY KEY,
    name       TEXT    NOT NULL CONSTRAINT rights_holders_name_unique UNIQUE,
    created_at BIGINT  NOT NULL
);
