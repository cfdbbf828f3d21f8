-- The users/comments example on MariaDB (docker compose --profile mariadb up mounts it into the mariadb
-- image's /docker-entrypoint-initdb.d, which runs it once, on an empty data directory).
--
-- Debezium's MariaDB connector reads the binary log: the server runs with log-bin, binlog_format=ROW
-- and binlog_row_image=FULL (the compose file sets them), so every UPDATE and DELETE carries the whole
-- old row and no table needs anything like PostgreSQL's REPLICA IDENTITY FULL.

CREATE DATABASE IF NOT EXISTS app;
USE app;

CREATE TABLE users (
  id           BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name         VARCHAR(200) NOT NULL,
  email        VARCHAR(200) NOT NULL UNIQUE,
  created_at   TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  last_seen_at TIMESTAMP(6) NULL
);

CREATE TABLE comments (
  id         BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  user_id    BIGINT UNSIGNED NOT NULL,
  content    TEXT NOT NULL,
  likes      INT NOT NULL DEFAULT 0,
  created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  KEY comments_user_id (user_id),
  -- ON DELETE CASCADE is not used: InnoDB's cascaded deletes are not written to the binary log, so
  -- Debezium never sees them. Delete a user's comments in the application, in the same transaction.
  CONSTRAINT comments_user FOREIGN KEY (user_id) REFERENCES users (id)
);

-- The connector's account: what Debezium's MariaDB connector needs to read the binary log.
CREATE USER IF NOT EXISTS 'debezium'@'%' IDENTIFIED BY 'debezium';
GRANT SELECT, RELOAD, SHOW DATABASES, REPLICATION SLAVE, REPLICATION CLIENT, BINLOG MONITOR ON *.* TO 'debezium'@'%';

INSERT INTO users (id, name, email) VALUES (1, 'Ada Lovelace', 'ada@example.com'), (2, 'Alan Turing', 'alan@example.com');
INSERT INTO comments (id, user_id, content) VALUES (1, 1, 'Hello'), (2, 2, 'Hi');
