output "stream_name" {
  description = "Name of the usage-event stream."
  value       = aws_kinesis_stream.this.name
}

output "stream_arn" {
  description = "ARN of the usage-event stream."
  value       = aws_kinesis_stream.this.arn
}
